"""Every Python code block of the README runs, as pasted, as a script of its own.

Each block runs in a fresh temporary directory, in a subprocess of this interpreter, with this
checkout importable, eSpeak NG as the engine, ``$SPARKTTS_CACHE_DIR`` pointing into the temporary
directory and the checkout's ``examples/`` linked there (so ``examples/texts/...`` resolves as in
the checkout). A block that cannot run here (it needs Spark-TTS weights, a server, a file of
yours) says so on the line before it, with the reason::

    <!-- readme: not run (needs a Redis server) -->

A block added later is run too, unless it carries that marker: a new example is right as pasted
or says why it cannot be run. A block that talks to the speech server at ``127.0.0.1:8000`` (the
README's address of ``sparktts-cache serve``) runs against a real server started for it, on a free
port put in that address's place.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from .speech_server import running_server

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

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
    """The README's ```python blocks, each with its line, section and marker reason (if any)."""
    blocks = []
    for match in FENCE.finditer(text):
        if match.group("lang") != "python":
            continue
        before = text[: match.start()]
        headings = re.findall(r"^#+ (.+)$", before, re.MULTILINE)
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


#: The address the README's speech-server examples use.
SERVER_ADDRESS = "http://127.0.0.1:8000"

BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_the_extraction_finds_every_python_block() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(BLOCKS) == text.count("```python\n") >= 6
    assert NOT_RUN.fullmatch("<!-- readme: not run (needs a server) -->")
    # A marker with no reason, or anywhere but right before a block, marks nothing: say so.
    loose = [m.start() for m in re.finditer("<!-- readme: not run", text)]
    assert len(loose) == sum(block.not_run is not None for block in BLOCKS), "a stray marker"
    sample = (
        "# A\n\n<!-- readme: not run (why) -->\n```python\nx = 1\n```\n\n"
        "## B\n```python\ny\n```\n```bash\nls\n```\n"
    )
    assert python_blocks(sample) == [Block(4, "A", "x = 1\n", "why"), Block(9, "B", "y\n", None)]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.not_run is None], ids=lambda b: f"line {b.line}: {b.heading}"
)
def test_readme_block_runs(block: Block, tmp_path: Path) -> None:
    pytest.importorskip("espeakng_loader", reason="the README's examples speak through eSpeak NG")
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    if SERVER_ADDRESS in block.code:
        with running_server(tmp_path / "server-cache", "--engine", "espeak") as server:
            run_block(block, tmp_path, block.code.replace(SERVER_ADDRESS, server.url))
            assert server.synthesised() > 0, "the example did not reach the server"
    else:
        run_block(block, tmp_path, block.code)


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
    """Those that are not run say why; most must run (the README is what newcomers paste)."""
    skipped = [block for block in BLOCKS if block.not_run is not None]
    assert all(block.not_run and block.not_run.strip() for block in skipped)
    assert len(skipped) * 2 < len(BLOCKS), [f"line {b.line}: {b.not_run}" for b in skipped]
