"""Replicas and the shape of the bus: single server, cluster or leaf.

``nats.replicas`` is applied when a stream, the work-queue consumer or a KV bucket is created. An existing one is
scaled up to it but never down: a worker started with the default (1) against a cluster's R3 streams must not
shrink them (JetStream allows changing ``num_replicas`` with a stream update; see
https://docs.nats.io/running-a-nats-service/nats_admin/jetstream_admin/streams, "Updating a stream").
On a single server JetStream refuses replicas > 1 (API error 10074, "replicas > 1 not supported in
non-clustered mode"): that becomes one clear line.

``describe`` reads what the server and the events stream say about themselves: the server's INFO (its name,
whether it runs JetStream, its cluster) and the stream's cluster block (leader and replicas), as documented for
``$JS.API.STREAM.INFO`` (https://docs.nats.io/reference/reference-protocols/nats_api_reference).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js import api as jsapi
from nats.js.errors import BadRequestError, ServerError
from nats.js.kv import KeyValue

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.nats_compat import server_info
from swarm_tui.engine.errors import BusError
from swarm_tui.engine.info import BusTopology as Topology
from swarm_tui.engine.states import TopologyKind

log = logging.getLogger(__name__)

NOT_CLUSTERED = 10074  # "replicas > 1 not supported in non-clustered mode"
NOT_ENOUGH_PEERS = 10005  # "insufficient resources" (fewer servers than replicas)


class DescribedBus(Protocol):
    """What ``describe`` reads of the bus: the connection, whether it is a leaf, the lookup context."""

    @property
    def nc(self) -> NATS | None: ...

    @property
    def leaf(self) -> bool: ...

    @property
    def lookup(self) -> JetStreamContext: ...


def _replica_error(exc: ServerError | BadRequestError, want: int, what: str) -> BusError:
    code = getattr(exc, "err_code", None)
    if code == NOT_CLUSTERED:
        return BusError(
            f"nats.replicas = {want} needs a JetStream cluster of at least {want} servers; this bus is a single "
            "server: set nats.replicas = 1 or point nats.url at a cluster (docs/deploy.md)",
            code=2,
        )
    desc = getattr(exc, "description", None) or str(exc)
    return BusError(f"NATS refused {what} with {want} replicas: {desc}", code=2)


async def ensure_stream(
    js: JetStreamContext, cfg: jsapi.StreamConfig, replicas: int, *, keep_limits: bool = False
) -> None:
    """Create the stream, or bring an existing one to ``cfg``, keeping a higher replica count it already has
    (and, with ``keep_limits``, the max_age and max_bytes it has: only the engine's start sets the log's)."""
    cfg.num_replicas = replicas
    try:
        await js.add_stream(cfg)
        return
    except ServerError as exc:
        if getattr(exc, "err_code", None) == NOT_CLUSTERED or replicas > 1:
            raise _replica_error(exc, replicas, f"the stream {cfg.name}") from None
        raise
    except BadRequestError:  # exists with another configuration: bring it to ours
        pass
    info = await js.stream_info(str(cfg.name))
    have = info.config.num_replicas or 1
    if have > replicas:
        log.info("stream %s keeps its %d replicas (nats.replicas is %d: never scaled down)", cfg.name, have, replicas)
    cfg.num_replicas = max(have, replicas)
    if keep_limits:
        cfg.max_age, cfg.max_bytes = info.config.max_age, info.config.max_bytes
    try:
        await js.update_stream(cfg)
    except (ServerError, BadRequestError) as exc:
        if cfg.num_replicas > have:
            raise _replica_error(exc, cfg.num_replicas, f"scaling the stream {cfg.name}") from None
        raise


async def ensure_kv(js: JetStreamContext, bucket: str, ttl: float | None, replicas: int) -> KeyValue:
    """Open a bucket, creating it with ``replicas``, or scaling its stream (``KV_<bucket>``) up to them."""
    try:
        kv = await js.key_value(bucket)
    except Exception:  # noqa: BLE001 - not found (BucketNotFoundError) or not answered: creating it decides
        try:
            return await js.create_key_value(
                bucket=bucket,
                history=1,
                ttl=ttl,
                storage=jsapi.StorageType.FILE,
                max_bytes=16 * 1024 * 1024,
                replicas=replicas,
            )
        except (ServerError, BadRequestError) as exc:
            if replicas > 1:
                raise _replica_error(exc, replicas, f"the bucket {bucket}") from None
            raise
    stream = f"KV_{bucket}"
    info = await js.stream_info(stream)
    if (info.config.num_replicas or 1) < replicas:
        info.config.num_replicas = replicas
        try:
            await js.update_stream(info.config)
        except (ServerError, BadRequestError) as exc:
            raise _replica_error(exc, replicas, f"scaling the bucket {bucket}") from None
    return kv


async def describe(bus: DescribedBus) -> Topology:
    """Single server, cluster or leaf; the events stream's replicas and leader; the work queue's leader."""
    info = server_info(bus.nc)
    out: Topology = {"server": str(info.get("server_name") or info.get("server_id") or "")}
    try:
        js = bus.lookup
        si = await js.stream_info(S.EVENTS_STREAM)
    except Exception as exc:  # noqa: BLE001 - no JetStream answers (a leaf whose hub is away, no stream yet)
        out["kind"] = _kind(bus, info)
        out["error"] = f"JetStream did not answer: {type(exc).__name__}"
        return out
    cl = si.cluster
    out["replicas"] = int(si.config.num_replicas or 1)
    out["leader"] = str(cl.leader or "") if cl else ""
    out["cluster"] = str(cl.name or "") if cl else ""
    out["peers"] = [
        {"name": p.name, "current": bool(p.current), "lag": int(p.lag or 0), "offline": bool(p.offline)}
        for p in ((cl.replicas or []) if cl else [])
    ]
    try:
        ci = await js.consumer_info(S.JOBS_STREAM, S.jobs_consumer("cloud"))
        out["work_queue_leader"] = str(ci.cluster.leader or "") if ci.cluster else ""
    except Exception:  # noqa: BLE001 - no work queue yet (a UI on a bus no engine set up)
        out["work_queue_leader"] = ""
    out["kind"] = _kind(bus, info, out["cluster"])
    return out


def _kind(bus: DescribedBus, info: dict[str, Any], cluster: str = "") -> TopologyKind:
    """A leaf: JetStream is not the connected server's own (ours on a leaf, or a server without it answering)."""
    if bus.leaf or not info.get("jetstream", False):
        return "leaf"
    return "cluster" if cluster or info.get("cluster") else "single server"


def one_line(t: Topology) -> str:
    """``cluster "swarm", 3 replicas, leader n2 (connected to n1)``; for doctor and status."""
    kind = t.get("kind", "?")
    if t.get("error"):
        return f"{kind}, {t['error']}"
    parts = [kind + (f' "{t["cluster"]}"' if t.get("cluster") else "")]
    parts.append(f"{t.get('replicas', 1)} replica{'s' if t.get('replicas', 1) != 1 else ''}")
    if kind == "single server":  # its name is a generated id unless the operator named it
        return ", ".join(parts)
    if t.get("leader"):
        parts.append(f"leader {t['leader']}")
    lagging = [p["name"] for p in t.get("peers", []) if p.get("offline") or not p.get("current")]
    if lagging:
        parts.append("behind or offline: " + ", ".join(lagging))
    if kind != "leaf" and t.get("server") and t.get("server") != t.get("leader"):  # a leaf: our own server
        parts.append(f"connected to {t['server']}")
    return ", ".join(parts)
