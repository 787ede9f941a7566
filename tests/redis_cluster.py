"""A real Redis Cluster for the tests: six redis-server processes on loopback ports, three masters
and three replicas, built by ``redis-cli --cluster create``."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from .redis_server import free_port
from .system_programs import require_program, unavailable

#: Milliseconds before a silent master is declared failed (its replica then takes over).
NODE_TIMEOUT_MS = 1000


def _ports(count: int) -> list[int]:
    """Ports free here whose cluster-bus port (port + 10000) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


class RedisClusterNodes:
    """Six redis-server processes in cluster mode, made into one cluster (the test is skipped
    where redis-server or redis-cli is missing, and fails there in CI)."""

    def __init__(self, directory: Path) -> None:
        self.server = require_program("redis-server")
        self.cli = require_program("redis-cli")
        self.directory = directory
        self.ports = _ports(6)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """Three of the nodes, as a deployment would list them (any one that answers will do)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports[:3])

    def start(self) -> None:
        for port in self.ports:
            node_dir = self.directory / str(port)
            node_dir.mkdir(exist_ok=True)
            self.procs[port] = subprocess.Popen(
                [self.server, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                 "--appendonly", "no", "--dir", str(node_dir), "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", str(NODE_TIMEOUT_MS)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        for port in self.ports:
            self._wait_for(port)
        subprocess.run(
            [self.cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in self.ports),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self.wait_until_ok()

    def _wait_for(self, port: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {port} did not start")

    def cli_run(self, port: int, *args: str) -> str:
        done = subprocess.run([self.cli, "-p", str(port), *args], capture_output=True,
                              text=True, timeout=10, check=True)  # fmt: skip
        return done.stdout

    def wait_until_ok(self, timeout: float = 30.0) -> float:
        """Wait until every live node says ``cluster_state:ok`` and sees the same masters;
        the seconds waited."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            try:
                states = [self.cli_run(port, "cluster", "info") for port in self.live_ports()]
                if all("cluster_state:ok" in state for state in states):
                    return time.monotonic() - began
            except (subprocess.SubprocessError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not become ok")

    def live_ports(self) -> list[int]:
        return [port for port, proc in self.procs.items() if proc.poll() is None]

    def masters(self) -> dict[int, tuple[int, int]]:
        """Each live master's port and its slot ranges' first and last slot (one range each
        after ``--cluster create``)."""
        masters: dict[int, tuple[int, int]] = {}
        for line in self.cli_run(self.live_ports()[0], "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" in fields[2] and "fail" not in fields[2] and len(fields) > 8:
                port = int(fields[1].split("@")[0].rpartition(":")[2])
                first, _, last = fields[8].partition("-")
                masters[port] = (int(first), int(last or first))
        return masters

    def kill(self, port: int) -> None:
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            proc.wait(timeout=10)
        self.procs.clear()


def started_cluster(directory: Path) -> RedisClusterNodes:
    """A started cluster in ``directory``; the test skips (fails in CI) if none can be."""
    nodes = RedisClusterNodes(directory)
    try:
        nodes.start()
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        nodes.stop()
        unavailable(f"no Redis Cluster can be started here with redis-server: {exc}")
    return nodes
