"""Every Python code block of the README and of ``docs/*.md`` runs, as pasted, as a script.

Each block runs in a fresh temporary directory, in a subprocess of this interpreter, with this
checkout importable, eSpeak NG as the engine, ``$SPARKTTS_CACHE_DIR`` pointing into the temporary
directory and the checkout's ``examples/`` linked there (so ``examples/texts/...`` resolves as in
the checkout). A block that cannot run here (it needs Spark-TTS weights, a server, a file of
yours) says so on the line before it, with the reason::

    <!-- readme: not run (needs a Redis server) -->

A block added later, to the README or to any page of ``docs/``, is run too, unless it carries that
marker: a new example is right as pasted or says why it cannot be run. A block that talks to the
speech server at ``127.0.0.1:8000`` (the documents' address of ``sparktts-cache serve``) runs
against a real server started for it, on a free port put in that address's place.

The links between these documents are checked too: each relative link names a file of the
checkout, and each ``#anchor`` a heading of its target (as GitHub makes anchors of headings).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pytest

from .speech_server import running_server

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"

#: The documents whose blocks run: the README and every page of docs/.
DOCUMENTS = [README, *sorted(DOCS.glob("*.md"))]

#: The marker of a block that is not run, with its reason.
NOT_RUN = re.compile(r"<!-- readme: not run \((?P<reason>[^)]+)\) -->")
#: A fenced block: its opening line's language and its body.
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\n(?P<body>.*?)^```$", re.DOTALL | re.MULTILINE)


class Block(NamedTuple):
    line: int
    heading: str
    code: str
    not_run: str | None  # the reason, for a marked block


def python_blocks(text: str) -> list[Block]:
    """A document's ```python blocks, each with its line, section and marker reason (if any)."""
    blocks = []
    for match in FENCE.finditer(text):
        if match.group("lang") != "python":
            continue
        before = text[: match.start()]
        headings = re.findall(r"^#+ (.+)$", FENCE.sub("", before), re.MULTILINE)
        previous = before.rstrip("\n").rpartition("\n")[2]
        marker = NOT_RUN.fullmatch(previous.strip())
        blocks.append(
            Block(
                line=before.count("\n") + 1,
                heading=headings[-1] if headings else "",
                code=match.group("body"),
                not_run=marker.group("reason") if marker else None,
            )
        )
    return blocks


def name_of(path: Path) -> str:
    """A document's name as test ids and messages give it: its path in the checkout."""
    return path.relative_to(ROOT).as_posix()


#: The address the documents' speech-server examples use.
SERVER_ADDRESS = "http://127.0.0.1:8000"

TEXTS = {name_of(path): path.read_text(encoding="utf-8") for path in DOCUMENTS}
BLOCKS = {name: python_blocks(text) for name, text in TEXTS.items()}


def test_the_readme_and_the_docs_pages_are_all_found() -> None:
    assert next(iter(TEXTS)) == "README.md"
    assert len(TEXTS) >= 2, "no docs/*.md page found"
    # Every page of docs/ is linked from the README, so that a newcomer finds it.
    linked = {target for target, _ in links(TEXTS["README.md"])}
    assert {name for name in TEXTS if name.startswith("docs/")} <= linked


def test_the_extraction_finds_every_python_block() -> None:
    for name, text in TEXTS.items():
        assert len(BLOCKS[name]) == text.count("```python\n"), name
        # A marker with no reason, or anywhere but right before a block, marks nothing: say so.
        loose = [m.start() for m in re.finditer("<!-- readme: not run", text)]
        marked = sum(block.not_run is not None for block in BLOCKS[name])
        assert len(loose) == marked, f"a stray marker in {name}"
    assert sum(len(blocks) for blocks in BLOCKS.values()) >= 6
    assert NOT_RUN.fullmatch("<!-- readme: not run (needs a server) -->")
    sample = (
        "# A\n\n<!-- readme: not run (why) -->\n```python\nx = 1\n```\n\n"
        "## B\n```python\ny\n```\n```bash\n# not a heading\nls\n```\n```python\nz\n```\n"
    )
    assert python_blocks(sample) == [
        Block(4, "A", "x = 1\n", "why"),
        Block(9, "B", "y\n", None),
        Block(16, "B", "z\n", None),
    ]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("source", "block"),
    [
        pytest.param(name, block, id=f"{name} line {block.line}: {block.heading}")
        for name, blocks in BLOCKS.items()
        for block in blocks
        if block.not_run is None
    ],
)
def test_documented_block_runs(source: str, block: Block, tmp_path: Path) -> None:
    pytest.importorskip("espeakng_loader", reason="the documents' examples speak through eSpeak NG")
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    if SERVER_ADDRESS in block.code:
        with running_server(tmp_path / "server-cache", "--engine", "espeak") as server:
            run_block(block, tmp_path, block.code.replace(SERVER_ADDRESS, server.url), source)
            assert server.synthesised() > 0, "the example did not reach the server"
    else:
        run_block(block, tmp_path, block.code, source)


def run_block(block: Block, tmp_path: Path, code: str, source: str = "README.md") -> str:
    """Run ``code`` as a script in ``tmp_path``; assert that it exits 0 and warns of nothing, and
    return what it printed."""
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "SPARKTTS_CACHE_DIR": str(tmp_path / "default-cache"),
        "PYTHONWARNINGS": "error",  # a coroutine never awaited, among others, is reported
    }
    done = subprocess.run(
        [sys.executable, "-X", "dev", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    where = f"{source} line {block.line} ({block.heading})"
    assert done.returncode == 0, f"{where} failed:\n{done.stderr}\n{code}"
    # Warnings raised in __del__ (an unawaited coroutine) do not fail a script: they are printed.
    assert "never awaited" not in done.stderr, f"{where}:\n{done.stderr}"
    assert "Warning" not in done.stderr, f"{where}:\n{done.stderr}"
    return done.stdout


def test_few_blocks_are_not_run() -> None:
    """Those that are not run say why; most must run (the documents are what newcomers paste):
    fewer than half of all blocks, and no more than half of any one document's."""
    skipped = {
        name: [block for block in blocks if block.not_run is not None]
        for name, blocks in BLOCKS.items()
    }
    for name, blocks in skipped.items():
        assert all(block.not_run and block.not_run.strip() for block in blocks)
        reasons = [f"{name} line {b.line}: {b.not_run}" for b in blocks]
        assert len(blocks) * 2 <= len(BLOCKS[name]), reasons
    total = sum(len(blocks) for blocks in BLOCKS.values())
    assert sum(len(blocks) for blocks in skipped.values()) * 2 < total


#: A Markdown link or image: its target, up to an optional title.
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
#: A span of inline code, whose brackets are not links.
CODE_SPAN = re.compile(r"(`+)(?:.|\n)*?\1")


def links(text: str) -> list[tuple[str, str]]:
    """The relative links of a document, outside code, as (file, anchor); the file is "" for an
    anchor in the same document."""
    prose = CODE_SPAN.sub("", FENCE.sub("", text))
    found = []
    for match in LINK.finditer(prose):
        target = match.group("target")
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        found.append((path, anchor))
    return found


def anchors(text: str) -> set[str]:
    """The anchors GitHub makes of a document's headings: lower case, punctuation dropped, spaces
    made hyphens, and ``-1``, ``-2`` ... after a repeated one."""
    seen: Counter[str] = Counter()
    made = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", FENCE.sub("", text), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        made.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return made


def test_anchors_are_made_as_github_makes_them() -> None:
    text = "# A b\n## The command line: `x-y` (or `python -m z_w`)\n# A b\n```\n# code\n```\n"
    assert anchors(text) == {"a-b", "the-command-line-x-y-or-python--m-z_w", "a-b-1"}
    assert links("[x](a.md#b) `[y](no.md)` [z](https://e.org) [w](#c)\n") == [
        ("a.md", "b"),
        ("", "c"),
    ]


@pytest.mark.parametrize("source", list(TEXTS))
def test_every_link_between_the_documents_resolves(source: str) -> None:
    here = (ROOT / source).parent
    broken = []
    for path, anchor in links(TEXTS[source]):
        target = (here / path).resolve() if path else ROOT / source
        if not target.exists():
            broken.append(f"{path}: no such file")
        elif anchor and target.suffix == ".md":
            if anchor not in anchors(target.read_text(encoding="utf-8")):
                broken.append(f"{path}#{anchor}: no such heading")
        elif anchor:
            broken.append(f"{path}#{anchor}: an anchor into a file that is not a document")
    assert not broken, f"{source}: {broken}"
