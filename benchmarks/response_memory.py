"""The speech server's memory while clients hold a stored response without reading it.

A stored response is read from its blob in pieces as the client takes them, so a client that
never reads holds one piece in the server, not the response. This starts ``sparktts-cache serve``
(eSpeak), stores one long response (pcm, about 16 MB), then opens ``CLIENTS`` connections that each
send the request and never read, and reports the server's resident memory before and after: the
ratio is what the idle clients cost, against the same process without them.

Command: ``.venv/bin/python -m benchmarks.response_memory`` (about a minute; writes
``benchmarks/results/response_memory.json``).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time

import httpx

from .server import ROOT, free_port

CLIENTS = 150
RESULTS = ROOT / "benchmarks" / "results" / "response_memory.json"


def resident_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def main() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            [sys.executable, "-m", "sparktts_cache", "--cache-dir", f"{directory}/cache", "serve",
             "--port", str(port), "--max-input-chars", "6000", "--cache-headers"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start")
                time.sleep(0.2)
            text = " ".join(f"Sentence number {i} of the memory test is here." for i in range(110))
            body = json.dumps(
                {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"}
            ).encode()
            headers = {"Content-Type": "application/json"}
            for _ in range(2):  # made, then served stored
                response = httpx.post(
                    f"{url}/v1/audio/speech", content=body, headers=headers, timeout=600
                )
            assert response.headers["x-cache"] == "hit", response.headers
            size = len(response.content)
            time.sleep(1)
            before = resident_mib(server.pid)
            request = (
                f"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                f"application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            idle: list[socket.socket] = []
            try:
                for _ in range(CLIENTS):
                    client = socket.create_connection(("127.0.0.1", port))
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    client.sendall(request)
                    idle.append(client)
                time.sleep(10)
                after = resident_mib(server.pid)
            finally:
                for client in idle:
                    client.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    result = {
        "clients": CLIENTS,
        "response_bytes": size,
        "rss_before_mib": round(before, 1),
        "rss_with_idle_clients_mib": round(after, 1),
        "mib_per_idle_client": round((after - before) / CLIENTS, 3),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
