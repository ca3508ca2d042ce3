"""The login options nats-py gets for a bus named by ``nats.url``: token, user and password, creds, TLS.

The embedded server of a data dir takes none of these: its token comes with its ``Pin`` (``pin.py``).
"""

from __future__ import annotations

import os
import ssl
from typing import Any

from swarm_tui.engine.config.load import Config
from swarm_tui.engine.errors import BusError


def auth_options(cfg: Config) -> dict[str, Any]:
    """nats-py's keyword arguments for the configured login; a file that is not there is one line (exit 2)."""
    n = cfg.nats
    opts: dict[str, Any] = {}
    if n.token:
        opts["token"] = n.token
    if n.user:
        opts["user"] = n.user
        opts["password"] = n.password
    for key, path, opt in (
        ("nats.creds", n.creds, "user_credentials"),
        ("nats.nkey_seed", n.nkey_seed, "nkeys_seed"),
    ):
        if path:
            if not os.path.isfile(path):
                raise BusError(f"{key} file {path} does not exist", code=2)
            opts[opt] = path
    for key, path in (
        ("nats.tls_ca", n.tls_ca),
        ("nats.tls_cert", n.tls_cert),
        ("nats.tls_key", n.tls_key),
    ):
        if path and not os.path.isfile(path):
            raise BusError(f"{key} file {path} does not exist", code=2)
    if n.tls_ca or n.tls_cert:
        ctx = ssl.create_default_context(cafile=n.tls_ca or None)
        if n.tls_cert:
            ctx.load_cert_chain(n.tls_cert, n.tls_key or None)
        opts["tls"] = ctx
    return opts
