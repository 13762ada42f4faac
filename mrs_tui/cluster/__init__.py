"""Running the heavy work on a Ray cluster: indexing (`cluster.indexing`) and the evaluation grid
(`cluster.grid`).

Ray is an optional extra (``pip install "mrs-tui[ray]"``). This module imports it only inside
`connect`, so the app and the CLI load without it; without it, `--ray` says what to install.

Addresses (`--ray`):

- ``auto``: an existing cluster — the one in ``RAY_ADDRESS``, or the one ``ray start --head``
  started on this machine;
- ``local``: a new cluster on this machine with all its cores, stopped at the end;
- ``ray://HOST:PORT``: a remote cluster through Ray Client (the head's client port, 10001);
- ``HOST:PORT``: the head's GCS address, for a driver running on a node of the cluster.

The driver (this process) is the only one that touches the database: workers get tracks and
audio, and send back vectors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mrs_tui.errors import UserError

RAY_REQUIREMENT = "ray[client]>=2.60"
INSTALL_HINT = f'install it with: pip install "mrs-tui[ray]" (or: pip install "{RAY_REQUIREMENT}")'


@dataclass
class ClusterOptions:
    """Where and how to run on a cluster."""

    address: str = "auto"
    ship_audio: bool = False  # send file bytes through the object store (workers cannot read the library)
    actors: int | None = None  # embedding actors per backend; None: one per GPU, or as the CPUs allow
    max_in_flight: int | None = None  # tracks between "sent to decode" and "stored"; bounds memory
    num_cpus: int | None = None  # only for address "local": logical CPUs of the new cluster
    actor_resources: dict[str, float] | None = None  # custom resources per embedding actor: models on labelled nodes

    def __post_init__(self) -> None:
        valid = self.address in ("auto", "local") or self.address.startswith("ray://") or ":" in self.address
        if not valid:
            raise UserError(f"--ray {self.address!r} is not a cluster address", "use auto, local or ray://HOST:PORT")


def require_ray() -> Any:
    """The `ray` module, or a UserError naming exactly what to install."""
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs the Ray package, which is not installed", INSTALL_HINT) from None
    return ray


@contextlib.contextmanager
def connect(options: ClusterOptions) -> Iterator[Any]:
    """Connect this process to the cluster (or reuse the connection it has) for the block's length."""
    ray = require_ray()
    if ray.is_initialized():  # the caller connected already (a notebook, the tests): leave it connected
        yield ray
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if options.address == "local":
        kwargs.update(address="local", num_cpus=options.num_cpus)
    else:
        kwargs["address"] = options.address
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise UserError(
            f"cannot reach a Ray cluster at {options.address}: {exc}",
            "start one with `ray start --head` (and `ray start --address HEAD:6379` on each worker), "
            "or use --ray local",
        ) from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def node_labels(ray: Any) -> dict[str, str]:
    """Node id -> a short name people can find the machine by: "10.0.0.5", or "10.0.0.5#2" for the
    second node on one address. The head node comes first."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    alive.sort(key=lambda n: "node:__internal_head__" not in n.get("Resources", {}))
    labels: dict[str, str] = {}
    seen: dict[str, int] = {}
    for node in alive:
        address = node["NodeManagerAddress"]
        seen[address] = seen.get(address, 0) + 1
        labels[node["NodeID"]] = address if seen[address] == 1 else f"{address}#{seen[address]}"
    return labels


def alive_node_ids(ray: Any) -> list[str]:
    return [n["NodeID"] for n in ray.nodes() if n.get("Alive")]


def describe_error(exc: BaseException) -> str:
    """The line of a Ray error that says what went wrong, without its traceback framing."""
    text = str(getattr(exc, "cause", None) or exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.startswith(("Traceback", "File ", "ray::", "^"))]
    return (meaningful[-1] if meaningful else text)[:300]
