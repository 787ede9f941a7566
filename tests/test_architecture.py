"""The package's structure, as docs/architecture.md draws it.

Imports run one way (no cycle, even through imports inside functions), no module imports another's
private name, and each layer imports only the layers below it.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

import sparktts_cache

PACKAGE = Path(sparktts_cache.__file__).parent

#: Layer -> the layers it may import. Modules outside these (the front door, the CLI, testing)
#: may import anything.
LAYERS = {
    "_core": {"_core"},
    "engines": {"_core", "engines"},
    "_file": {"_core", "_file"},
    "_remote": {"_core", "_remote"},
    "_text": {"_core", "_file", "_text", "engines"},
}

#: The modules of ``_file``, in the order they may import each other: each imports only modules
#: before it (a module that imports one not listed fails: list it where it belongs). The tree
#: walk comes before who owns a directory, ownership before eviction (a cleanup adopts an
#: unmarked cache), and the write path (``store``: eviction and ownership) before maintenance on
#: demand, which it never imports.
FILE_MODULES = [
    "layout", "atomic", "counters", "walk", "ownership", "eviction", "store", "blobs",
    "maintenance",
    "status", "locks", "cache",
]  # fmt: skip


#: Modules of the server package may import these (the library's public API) and each other.
SERVER_MAY_IMPORT = {"sparktts_cache", "sparktts_cache.engines"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports() -> dict[str, list[tuple[str, list[str], int]]]:
    """Each module of the package -> (imported module, names imported from it, line), for every
    import statement anywhere in it that stays inside the package."""
    found: dict[str, list[tuple[str, list[str], int]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: list[tuple[str, list[str], int]] = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                target = importlib.util.resolve_name(base, package) if node.level else base
                names = [alias.name for alias in node.names]
                if target == "sparktts_cache" or target.startswith("sparktts_cache."):
                    # "from . import maintenance" imports a module, not a name
                    modules = [f"{target}.{n}" for n in names if is_module(f"{target}.{n}")]
                    edges += [(module, [], node.lineno) for module in modules]
                    rest = [n for n in names if f"{target}.{n}" not in modules]
                    if rest:
                        edges.append((target, rest, node.lineno))
            elif isinstance(node, ast.Import):
                edges += [
                    (alias.name, [], node.lineno)
                    for alias in node.names
                    if alias.name.startswith("sparktts_cache.")
                ]
        found[name] = edges
    return found


def test_the_walk_sees_the_package() -> None:
    found = imports()
    assert "sparktts_cache._file.store" in found and "sparktts_cache._core.keys" in found
    assert any(
        t == "sparktts_cache._file.layout" for t, _n, _l in found["sparktts_cache._file.store"]
    )


def test_no_import_cycle() -> None:
    graph = {
        module: {
            target for target, _names, _line in edges if target in imports_ and target != module
        }
        for imports_ in [imports()]
        for module, edges in imports_.items()
    }
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_no_private_name_is_imported_across_modules() -> None:
    private = [
        f"{module}:{line} imports {name} from {target}"
        for module, edges in imports().items()
        for target, names, line in edges
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert private == []


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_imports_only_the_layers_below_it(layer: str) -> None:
    wrong = []
    for module, edges in imports().items():
        parts = module.split(".")
        if len(parts) < 2 or parts[1] != layer:
            continue
        for target, _names, line in edges:
            target_parts = target.split(".")
            if len(target_parts) < 2:
                wrong.append(f"{module}:{line} imports the front door")
            elif target_parts[1] not in LAYERS[layer]:
                wrong.append(f"{module}:{line} imports {target}")
    assert wrong == []


def test_the_server_uses_only_the_public_api_and_nothing_imports_it() -> None:
    """The server is a client of the library: it imports the front door and the public
    ``engines`` module, and only the command line imports it (its ``serve`` command)."""
    wrong = []
    for module, edges in imports().items():
        in_server = module.startswith("sparktts_cache.server")
        for target, _names, line in edges:
            target_in_server = target.startswith("sparktts_cache.server")
            if in_server and not target_in_server and target not in SERVER_MAY_IMPORT:
                wrong.append(f"{module}:{line} imports {target}")
            if target_in_server and not in_server and module != "sparktts_cache._cli":
                wrong.append(f"{module}:{line} imports the server")
    assert wrong == []


def test_the_file_backend_s_modules_import_only_those_before_them() -> None:
    found = imports()
    assert "sparktts_cache._file.store" in found and "sparktts_cache._file.walk" in found
    wrong = []
    for index, name in enumerate(FILE_MODULES):
        below = {f"sparktts_cache._file.{n}" for n in FILE_MODULES[:index]}
        for target, _names, line in found.get(f"sparktts_cache._file.{name}", []):
            if target.startswith("sparktts_cache._file.") and target not in below:
                wrong.append(f"_file.{name}:{line} imports {target}")
    assert wrong == []
