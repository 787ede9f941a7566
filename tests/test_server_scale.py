"""Each segment synthesised once across server processes: ``--workers 2`` sharing one cache
directory (the file lock), and two servers with their own directories sharing a real
redis-server or a real Redis Cluster (``--redis``: the Redis tier and lock), as behind a load
balancer."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from sparktts_cache import TextSegmenter

from .redis_cluster import started_cluster
from .redis_server import started_redis
from .speech_server import SpeechServer, running_server

pytestmark = pytest.mark.slow

#: Concurrent identical requests, and the new segments of their text.
REQUESTS = 8
SEGMENTS = 6
#: Connections opened at most while looking for enough of them on each worker.
MAX_CONNECTIONS = 60


def sentences(count: int, tag: str) -> str:
    text = " ".join(
        f"Sentence {number} of the {tag} scale test is long enough that the segmenter keeps it "
        "apart from its neighbours."
        for number in range(count)
    )
    assert len(TextSegmenter().segment_text(text)) == count
    return text


def speech(text: str) -> dict[str, object]:
    return {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"}


def post_all_at_once(jobs: list[tuple[httpx.Client, str]], text: str) -> list[bytes]:
    """POST ``text`` through every (client, server URL) at once (a barrier releases them
    together); the bodies, in order."""
    barrier = threading.Barrier(len(jobs))
    bodies: list[bytes | None] = [None] * len(jobs)
    failures: list[BaseException] = []

    def request(index: int, client: httpx.Client, url: str) -> None:
        try:
            barrier.wait(timeout=30)
            response = client.post(f"{url}/v1/audio/speech", json=speech(text))
            assert response.status_code == 200, response.text
            bodies[index] = response.content
        except BaseException as exc:
            failures.append(exc)

    threads = [
        threading.Thread(target=request, args=(index, client, url))
        for index, (client, url) in enumerate(jobs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert all(body is not None for body in bodies)
    return [body for body in bodies if body is not None]


class WorkerCounters:
    """Each worker process's own counters, read from the files prometheus_client's multiprocess
    mode writes (one per process), to tell which worker served what."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def by_worker(self, name: str, labels: dict[str, str] | None = None) -> dict[str, float]:
        values: dict[str, float] = {}
        for path in sorted(self.directory.glob("counter_*.db")):
            pid = path.stem.removeprefix("counter_")
            merged = MultiProcessCollector.merge([str(path)], accumulate=True)  # type: ignore[no-untyped-call]
            for metric in merged:
                for sample in metric.samples:
                    if sample.name == name and (labels or {}).items() <= sample.labels.items():
                        values[pid] = values.get(pid, 0.0) + sample.value
        return values

    def requests(self) -> dict[str, float]:
        """Speech requests each worker answered without a stored response."""
        return self.by_worker("sparktts_cache_misses_total", {"kind": "response"})


def test_two_workers_sharing_a_directory_synthesise_each_segment_once(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    counters = WorkerCounters(metrics_dir)
    with running_server(
        tmp_path / "cache",
        "--workers",
        "2",
        "--cache-headers",
        env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
    ) as server:
        # Keep-alive connections, each found to be on one worker or the other, so that the
        # concurrent requests below are spread over both by construction, not by luck.
        pinned: dict[str, list[httpx.Client]] = {}
        clients: list[httpx.Client] = []
        try:
            for probe in range(MAX_CONNECTIONS):
                if len(pinned) == 2 and all(len(c) >= REQUESTS // 2 for c in pinned.values()):
                    break
                client = httpx.Client(timeout=60)
                clients.append(client)
                before = counters.requests()
                answer = client.post(
                    f"{server.url}/v1/audio/speech", json=speech(f"Probe {probe}.")
                )
                assert answer.status_code == 200
                moved = [
                    pid for pid, value in counters.requests().items() if value > before.get(pid, 0)
                ]
                assert len(moved) == 1
                pinned.setdefault(moved[0], []).append(client)
            assert len(pinned) == 2, f"every connection went to one worker: {pinned}"
            jobs = [
                (client, server.url)
                for worker in pinned.values()
                for client in worker[: REQUESTS // 2]
            ]
            assert len(jobs) == REQUESTS
            text = sentences(SEGMENTS, "workers")
            before_total = server.synthesised()
            before_requests = counters.requests()
            bodies = post_all_at_once(jobs, text)
        finally:
            for client in clients:
                client.close()
        assert len(set(bodies)) == 1
        # Both workers answered some of the requests, and between them made each segment once.
        served = {
            pid: value - before_requests.get(pid, 0) for pid, value in counters.requests().items()
        }
        assert sorted(v for v in served.values() if v) == [REQUESTS // 2, REQUESTS // 2], served
        assert server.synthesised() - before_total == SEGMENTS
        # /metrics (whichever worker answers) is the sum of the workers' own counts.
        per_worker = counters.by_worker("sparktts_segments_synthesised_total")
        assert sum(per_worker.values()) == server.synthesised()


def test_two_servers_sharing_redis_synthesise_each_segment_once(tmp_path: Path) -> None:
    redis = started_redis(made(tmp_path / "redis"))
    try:
        check_two_servers_sharing(tmp_path, redis.url)
    finally:
        redis.stop()


def test_two_servers_sharing_a_redis_cluster_synthesise_each_segment_once(tmp_path: Path) -> None:
    """The same over a Redis Cluster: ``--redis redis+cluster://host:port,...``."""
    cluster = started_cluster(made(tmp_path / "cluster"))
    try:
        check_two_servers_sharing(tmp_path, cluster.url)
    finally:
        cluster.stop()


def made(directory: Path) -> Path:
    directory.mkdir()
    return directory


def check_two_servers_sharing(tmp_path: Path, redis_url: str) -> None:
    """Two servers, each with its own cache directory, sharing the Redis tier at ``redis_url``."""
    options = ("--redis", redis_url, "--cache-headers")
    with (
        running_server(made(tmp_path / "a") / "cache", *options) as first,
        running_server(made(tmp_path / "b") / "cache", *options) as second,
    ):
        check_shared_synthesis(first, second)


def check_shared_synthesis(first: SpeechServer, second: SpeechServer) -> None:
    def made() -> float:
        return first.synthesised() + second.synthesised()

    text = sentences(SEGMENTS, "redis")
    before = made()
    clients = [httpx.Client(timeout=60) for _ in range(REQUESTS)]
    try:
        jobs = [(client, (first, second)[index % 2].url) for index, client in enumerate(clients)]
        bodies = post_all_at_once(jobs, text)
    finally:
        for client in clients:
            client.close()
    assert len(set(bodies)) == 1
    assert made() - before == SEGMENTS
    # A server that made none of a text finds it all in Redis: nothing more is made.
    other = sentences(3, "redis, one side")
    with httpx.Client(timeout=60) as client:
        assert client.post(f"{first.url}/v1/audio/speech", json=speech(other)).status_code == 200
        made_by_first = made()
        again = client.post(f"{second.url}/v1/audio/speech", json=speech(other))
    assert again.status_code == 200 and again.headers["x-cache"] == "partial"
    assert again.headers["x-cache-segments"] == "3/3"
    assert made() == made_by_first
