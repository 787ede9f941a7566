"""Chinese through ``serve --engine piper``: spoken by the fallback voice, against spelled.

Command: ``.venv/bin/python -m benchmarks.scripts`` (about a minute; prints the figures and writes
``benchmarks/results/scripts.json``).

Two servers on Piper's bundled English voice: one as it runs by default (Chinese sentences go to
eSpeak NG's Mandarin voice, see ``sparktts_cache.engines.scripts``), one whose voices file maps
``zh`` to Piper itself, which spells each character ("Chinese letter"), as every Piper server did
before. Each is sent the same Chinese text (133 characters) once through a fresh cache; the
figures are seconds of audio per character (Mandarin is read at about 0.2-0.35 s a character)
and the request's wall time per character.
"""

from __future__ import annotations

import asyncio
import io
import json
import tempfile
import time
from pathlib import Path

import httpx
import soundfile

from .server import running_server

RESULTS = Path(__file__).resolve().parent / "results" / "scripts.json"

CHINESE = (
    "缓存把每一句话都保存在磁盘上，同一句话永远不会合成两次。"
    "第一次请求时，服务器把文本分成句子，逐句合成并立即发送。"
    "第二次请求同样的文本时，音频直接从磁盘读取，几乎不需要等待。"
    "多个进程共享同一个缓存目录，每个句子只合成一次。"
    "即使服务器崩溃，也不会留下写了一半的音频文件。"
)


async def speak(address: str, text: str) -> dict[str, float]:
    body = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "wav"}
    began = time.perf_counter()
    async with httpx.AsyncClient(timeout=600) as client:
        response = await client.post(f"http://{address}/v1/audio/speech", json=body)
    wall = time.perf_counter() - began
    response.raise_for_status()
    audio, rate = soundfile.read(io.BytesIO(response.content))
    seconds = len(audio) / rate
    return {
        "characters": len(text),
        "audio_seconds": round(seconds, 2),
        "audio_seconds_per_character": round(seconds / len(text), 3),
        "wall_seconds_per_character": round(wall / len(text), 4),
    }


async def measure() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        spelled = work / "spelled.toml"
        spelled.write_text('[languages]\nzh = "piper"\n')
        result: dict[str, object] = {}
        async with running_server(work, "fallback", "--engine", "piper") as address:
            result["fallback (eSpeak NG cmn)"] = await speak(address, CHINESE)
        async with running_server(
            work, "spelled", "--engine", "piper", "--voices", str(spelled)
        ) as address:
            result["spelled (Piper's English voice)"] = await speak(address, CHINESE)
    return result


def main() -> None:
    result = asyncio.run(measure())
    print(json.dumps(result, indent=2, ensure_ascii=False))
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
