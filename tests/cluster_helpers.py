"""Real Ray clusters for the tests: nodes started with `ray start --block`, each in its own session.

Every process a node starts (GCS, raylet, workers) stays in the session of its `ray start`
process, so a node is stopped — and checked gone — by that session id alone: no `ray stop`,
which would stop every Ray process on the machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_environment(home: Path) -> dict[str, str]:
    """The environment of every node and driver of one test cluster.

    Token authentication is off: a Ray process reads its token once and keeps it, so a test
    process that talks to several short-lived clusters could not switch tokens; these clusters
    live for one test module on one machine.
    """
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1")
    # The workers' mrs-tui folders (weights cache, shipped audio) stay inside the test's folder.
    for var, sub in (("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "cache"), ("XDG_CONFIG_HOME", "config")):
        env[var] = str(home / sub)
    for var in ("MRS_TUI_DB", "MRS_TUI_CONFIG", "MRS_TUI_CACHE"):
        env.pop(var, None)
    return env


def session_processes(sid: int) -> list[int]:
    """Live (not zombie) processes of session `sid`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z" and int(fields[3]) == sid:
                pids.append(int(entry))
    return pids


def kill_session(sid: int, *, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL, every process of session `sid`, until none is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        for pid in session_processes(sid):
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while session_processes(sid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not session_processes(sid):
            return


class RayNode:
    """One Ray node (`ray start --block`) in its own session."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [RAY, "start", "--block", "--disable-usage-stats", *args],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def sid(self) -> int:
        return self.process.pid

    def worker_processes(self) -> list[int]:
        """This node's task and actor processes ("ray::..."), not its raylet or GCS."""
        out = []
        for pid in session_processes(self.sid):
            with suppress(OSError):
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"):
                    name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
                    if b"Agent" not in name:  # the dashboard and runtime-env agents are node services
                        out.append(pid)
        return out

    def stop(self) -> None:
        kill_session(self.sid)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


class LocalCluster:
    """A head node and optional worker nodes on this machine, stopped and checked gone at the end."""

    def __init__(
        self, cpus_per_node: list[int], *, object_store_mb: int = 100, second_node_resources: str | None = None
    ) -> None:
        # Ray's socket paths must fit in 107 bytes: a short folder of its own, not pytest's.
        self.temp = Path(tempfile.mkdtemp(prefix="mrsray"))
        self.env = ray_environment(self.temp / "home")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        memory = str(object_store_mb * 2**20)
        self.nodes = [
            RayNode(
                [
                    "--head",
                    f"--port={self.port}",
                    f"--num-cpus={cpus_per_node[0]}",
                    f"--object-store-memory={memory}",
                    f"--temp-dir={self.temp}",
                    "--include-dashboard=false",
                    f"--ray-client-server-port={free_port()}",
                ],
                self.env,
                self.temp / "head.log",
            )
        ]
        try:
            self.wait_for(1)
            for index, cpus in enumerate(cpus_per_node[1:], 2):
                self.nodes.append(
                    RayNode(
                        [
                            f"--address={self.address}",
                            f"--num-cpus={cpus}",
                            f"--object-store-memory={memory}",
                            *([f"--resources={second_node_resources}"] if second_node_resources else []),
                        ],
                        self.env,
                        self.temp / f"node{index}.log",
                    )
                )
            self.wait_for(len(cpus_per_node))
        except BaseException:
            self.stop()
            raise

    def _check_running(self) -> None:
        for node in self.nodes:
            if node.process.poll() is not None:
                raise RuntimeError(f"a Ray node exited: {node.log.read_text(errors='replace')[-2000:]}")

    def wait_for(self, count: int, timeout: float = 180.0) -> None:
        """Until `count` nodes are up: the head by its log, the others as the cluster lists them."""
        deadline = time.monotonic() + timeout
        head_log = self.nodes[0].log
        while "Ray runtime started" not in head_log.read_text(errors="replace"):
            self._check_running()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Ray head did not start in {timeout:.0f} s")
            time.sleep(0.2)
        if count == 1:
            return
        import ray

        saved = {k: os.environ.get(k) for k in self.env if k.startswith("RAY_")}
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("RAY_")})
        ray.init(address=self.address, log_to_driver=False)
        try:
            while sum(n["Alive"] for n in ray.nodes()) < count:
                self._check_running()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{count} Ray nodes did not come up in {timeout:.0f} s")
                time.sleep(0.5)
        finally:
            ray.shutdown()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def leftovers(self) -> list[int]:
        return [pid for node in self.nodes for pid in session_processes(node.sid)]

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        import shutil

        shutil.rmtree(self.temp, ignore_errors=True)
