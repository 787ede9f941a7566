"""The seed document's code runs against this package: it is the contract.

``tests/seed/sparktts-cache-README.md`` is the user's own document, byte for byte. Each of its code
blocks runs as a script, in both forms the README's "Coming from the seed module" describes, changed
only where that section says a change is needed:

- the imports name ``sparktts_cache`` (the blocking form imports ``SyncTTSCache`` and
  ``SyncLongTextTTS`` under the seed's names);
- the async form awaits every cache call and runs in an event loop;
- what the seed leaves to its reader is filled in: the ``/path/to/...`` files (a speaker prompt
  is keyed by its content, so it must exist), the ``{...}`` parameters (the first example's),
  ``load_tts_model(...)`` (eSpeak NG, since Spark-TTS weights cannot be downloaded here), and
  ``text``, ``params`` and ``generate_audio`` (a stand-in for Spark-TTS: 16 kHz audio).

Nothing else of a block is touched; what a test checks comes after the block, as plain statements.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile

from sparktts_cache import SyncTTSCache, generate_cache_key

from .test_readme import ROOT, Block, python_blocks, run_block

pytestmark = pytest.mark.slow

SEED = Path(__file__).parent / "seed" / "sparktts-cache-README.md"
#: Where the user's copy lies beside a checkout (in CI), to check that ours is the same.
USERS_SEED = ROOT.parent / "shared" / "seed" / "sparktts-cache-README.md"

BLOCKS = {block.heading: block for block in python_blocks(SEED.read_text(encoding="utf-8"))}
BASIC, STATUS, CLEAR = (
    BLOCKS["Basic Usage"],
    BLOCKS["Cache Status for Multiple Segments"],
    BLOCKS["Clearing the Cache"],
)
EXTENDING, INTEGRATION = (
    BLOCKS["Extending with Custom Cache Implementations"],
    BLOCKS["Integration with TTS"],
)

#: The seed's imports, and what each becomes in either form.
IMPORTS = {
    "blocking": {
        "from sparktts.cache import TTSCache": (
            "from sparktts_cache import SyncTTSCache as TTSCache"
        ),
        "from sparktts.cache import Cache": "from sparktts_cache import Cache",
        "from sparktts.utils.text_processing import TextSegmenter, LongTextTTS": (
            "from sparktts_cache import SyncLongTextTTS as LongTextTTS, TextSegmenter"
        ),
        "from sparktts.models import load_tts_model": "from sparktts_cache import load_tts_model",
    },
    "async": {
        "from sparktts.cache import TTSCache": "from sparktts_cache import TTSCache",
        "from sparktts.cache import Cache": "from sparktts_cache import Cache",
        "from sparktts.utils.text_processing import TextSegmenter, LongTextTTS": (
            "from sparktts_cache import LongTextTTS, TextSegmenter"
        ),
        "from sparktts.models import load_tts_model": "from sparktts_cache import load_tts_model",
    },
}

#: The seed's calls that are coroutines here: the async form awaits them.
AWAITED = re.compile(
    r"(?<![\w.])((?:cache\.(?:get_cached_data|cache_data|get_cache_status|clear_cache)"
    r"|long_text_handler\.generate)\()"
)

#: The stand-ins for what the seed's first example leaves to its reader: the text it keys, the
#: parameters it stores (the ones it keyed with) and Spark-TTS's ``generate_audio`` (16 kHz).
STAND_INS = """\
import numpy as np

text = "Hello world"
params = {params}


def generate_audio(text, params):
    rng = np.random.default_rng(len(text))
    return (rng.standard_normal(16000) * 0.1).astype(np.float32)  # 1 s at Spark-TTS's 16 kHz
"""


def seed_params(tmp_path: Path) -> dict[str, str]:
    """The parameters of the seed's first example, its ``/path/to`` placeholders made real."""
    call = next(
        node
        for node in ast.walk(ast.parse(fill_paths(BASIC.code, tmp_path)))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "generate_cache_key"
    )
    [keyword] = [k for k in call.keywords if k.arg == "tts_params"]
    params: dict[str, str] = ast.literal_eval(keyword.value)
    return params


def fill_paths(code: str, tmp_path: Path) -> str:
    """The seed's ``/path/to/...`` placeholders, as files in ``tmp_path``."""
    return code.replace('"/path/to/', f'"{tmp_path}/path/to/')


def make_seed_files(tmp_path: Path) -> None:
    """The model directory and speaker prompt the seed's parameters name."""
    (tmp_path / "path" / "to" / "model").mkdir(parents=True)
    speaker = np.sin(np.arange(8000) / 10).astype(np.float32) * 0.1
    soundfile.write(tmp_path / "path" / "to" / "speaker.wav", speaker, 16000)


def as_script(blocks: list[Block], form: str, tmp_path: Path, after: str = "") -> str:
    """The blocks as one script in ``form`` ("blocking" or "async"), then the checks ``after``."""
    params = seed_params(tmp_path)
    code = "\n".join(block.code for block in blocks) + textwrap.dedent(after)
    code = fill_paths(code, tmp_path)
    code = code.replace("load_tts_model(...)", 'load_tts_model("espeak")')
    code = code.replace("{...}", repr(params))
    for seed_import, ours in IMPORTS[form].items():
        code = code.replace(seed_import, ours)
    assert "sparktts." not in code, "an import of the seed's that this test does not change"
    if BASIC in blocks:
        code = STAND_INS.format(params=repr(params)) + code
    if form == "async":
        code = AWAITED.sub(r"await \1", code)
        code = "import anyio\n\n\nasync def main():\n" + textwrap.indent(code, "    ")
        code += "\n\nanyio.run(main)\n"
    return code


FORMS = ["blocking", "async"]


def test_the_copy_is_the_users_document() -> None:
    if not USERS_SEED.exists():
        pytest.skip("the user's seed document is not beside this checkout")
    assert SEED.read_bytes() == USERS_SEED.read_bytes()


def test_every_seed_block_is_run_here() -> None:
    assert len(python_blocks(SEED.read_text(encoding="utf-8"))) == len(BLOCKS) == 5
    # Each of the seed's imports is one this test changes, and nothing else names the seed's
    # package.
    for block in BLOCKS.values():
        for line in block.code.splitlines():
            if "sparktts" in line:
                assert line.strip() in IMPORTS["blocking"], line


@pytest.mark.parametrize("form", FORMS)
def test_the_quick_start_stores_then_reads_back(form: str, tmp_path: Path) -> None:
    make_seed_files(tmp_path)
    script = as_script([BASIC], form, tmp_path)
    assert run_block(BASIC, tmp_path, script, "the seed") == ""  # a miss: generated and cached
    assert run_block(BASIC, tmp_path, script, "the seed") == "Using cached audio\n"
    # Stored as the seed stored it: Spark-TTS's 16 kHz, the text and the parameters it keyed.
    params = seed_params(tmp_path)
    cache = SyncTTSCache(tmp_path / "path" / "to" / "cache")
    entry = cache.get_entry(generate_cache_key("Hello world", params))
    assert entry is not None and len(entry.audio) == 16000
    assert entry.meta.sample_rate == 16000
    assert entry.meta.text == "Hello world" and entry.meta.params == params


@pytest.mark.parametrize("form", FORMS)
def test_status_and_clear_after_the_quick_start(form: str, tmp_path: Path) -> None:
    make_seed_files(tmp_path)
    after = """
        assert len(cache_keys) == 3 and cached_keys == []
        assert segments_to_generate == ["Segment 1", "Segment 2", "Segment 3"]
        assert cache.get_cached_data(cache_key) is None  # cleared
    """
    script = as_script([BASIC, STATUS, CLEAR], form, tmp_path, after)
    printed = run_block(STATUS, tmp_path, script, "the seed")
    assert printed == "0/3 segments are cached\nCache cleared successfully\n"


@pytest.mark.parametrize("form", FORMS)
def test_a_custom_cache_as_the_seed_extends_it(form: str, tmp_path: Path) -> None:
    after = """
        custom = MyCustomCache("custom")
        print(type(custom).__mro__[1].__name__)
    """
    printed = run_block(EXTENDING, tmp_path, as_script([EXTENDING], form, tmp_path, after))
    assert printed == "Cache\n"


@pytest.mark.parametrize("form", FORMS)
def test_long_text_as_the_seed_integrates_it(form: str, tmp_path: Path) -> None:
    pytest.importorskip("espeakng_loader", reason="the seed's model stands in as eSpeak NG")
    make_seed_files(tmp_path)
    after = """
        print(len(audio) > model.sample_rate, fully_cached)
    """
    script = as_script([INTEGRATION], form, tmp_path, after)
    assert run_block(INTEGRATION, tmp_path, script, "the seed") == "True False\n"
    assert run_block(INTEGRATION, tmp_path, script, "the seed") == "True True\n"
    entries = list((tmp_path / "tts_cache").rglob("*.wav"))
    assert entries, "LongTextTTS cached nothing in the seed's tts_cache"
