#!/usr/bin/env bash
# Install the speech server into a new virtual environment, then check that it runs.
#
#   scripts/install-server.sh VENV_DIR [EXTRAS]
#
# VENV_DIR is created (it must not hold a virtual environment already); EXTRAS are the package's
# extras (default: server,espeak,piper,redis, the container's). The package is installed from
# this checkout, its dependencies from the package index, as `make install` does. The checks:
# `sparktts-cache serve --help` runs, and the server, started once on a free loopback port over
# an empty cache directory (as a fresh volume is) with a Piper voice beside eSpeak, answers
# /health with 200 and speaks one sentence with each engine; then it is stopped.
#
# The Dockerfile builds its image with this script; CI (.ci/run) runs it into a temporary
# directory, so the image's install steps are tested even where no image can be built.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 VENV_DIR [EXTRAS]" >&2
    exit 2
fi
venv=$1
extras=${2:-server,espeak,piper,redis}
checkout=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}

if [ -e "$venv/bin/python" ]; then
    echo "$0: $venv already holds a virtual environment" >&2
    exit 2
fi

began=$(date +%s)
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$checkout[$extras]"
echo "installed sparktts_cache[$extras] into $venv in $(( $(date +%s) - began )) s"

"$venv/bin/sparktts-cache" serve --help >/dev/null

# One start, as the container's first: an empty cache directory, a free loopback port.
work=$(mktemp -d)
server_pid=
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop_server EXIT
mkdir "$work/cache"
voice_options=()
case ",$extras," in
    *,piper,*)
        printf '[voices.joe]\nengine = "piper"\n' >"$work/voices.toml"
        voice_options=(--voices "$work/voices.toml")
        ;;
esac
port=$("$venv/bin/python" -c '
import socket
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])')
"$venv/bin/sparktts-cache" --cache-dir "$work/cache" serve --host 127.0.0.1 --port "$port" \
    ${voice_options[@]+"${voice_options[@]}"} >"$work/server.log" 2>&1 &
server_pid=$!

if ! "$venv/bin/python" - "$port" "${#voice_options[@]}" <<'PY'; then
import json
import sys
import time
import urllib.error
import urllib.request

port, piper = sys.argv[1], sys.argv[2] != "0"
base = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + 90
while True:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
            if response.status == 200:
                break
    except (urllib.error.URLError, OSError):
        pass
    if time.monotonic() > deadline:
        sys.exit("the server did not answer /health with 200 within 90 s")
    time.sleep(0.2)
for voice in ["alloy", "joe"] if piper else ["alloy"]:
    body = {"model": "tts-1", "voice": voice, "input": "The server is installed.",
            "response_format": "wav"}
    request = urllib.request.Request(
        f"{base}/v1/audio/speech", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        audio = response.read()
    if response.status != 200 or audio[:4] != b"RIFF" or len(audio) < 24000:
        sys.exit(f"voice {voice}: status {response.status}, {len(audio)} bytes")
PY
    echo "$0: the server did not start and speak; the end of its log:" >&2
    tail -n 60 "$work/server.log" >&2
    exit 1
fi
echo "sparktts-cache serve started and spoke on 127.0.0.1:$port; done in $(( $(date +%s) - began )) s"
