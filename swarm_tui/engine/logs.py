"""Logging to a file under the data dir, with every configured secret masked in every record."""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import re
from pathlib import Path

from swarm_tui.engine.paths import ensure_private_dir, open_private

# API keys, and the embedded NATS server's token (bus/embedded.py's TOKEN_PREFIX): every process of a data dir
# may hold it, also one whose configured secrets do not list it; and NATS nkey seeds ("S" + the key's type + 56
# base32 characters: the secret half of a .creds or seed file, which are paths in the config, not values). A key
# starts a word, or follows an escape quoted as text ("\nsk-or-…" in quoted JSON, "%3Dsk-or-…" in a URL), where
# a letter or digit touches it.
_KEYSTART = r"(?:\b|(?<=\\[nrtbf])|(?<=%[0-9A-Fa-f]{2})|(?<=\\u[0-9A-Fa-f]{4}))"
_KEYLIKE = re.compile(
    _KEYSTART + r"(sk-or-[A-Za-z0-9_-]{8,}|sk-[A-Za-z0-9_-]{16,}|swarm-nats-[A-Za-z0-9_-]{16,}|S[UAONCX][A-Z2-7]{56}\b)"
)


class Redactor(logging.Filter):
    """Replaces secret values (and anything that looks like an API key) in the formatted message."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 4]

    def scrub(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "***")
        return _KEYLIKE.sub("***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format or an argument whose str() raises: keep the record's template
            msg = str(record.msg)
        record.msg = self.scrub(msg)
        record.args = None
        if record.exc_info:
            import traceback

            text = "".join(traceback.format_exception(*record.exc_info))
            record.msg = record.msg + "\n" + self.scrub(text)
            record.exc_info = None
            record.exc_text = None
        return True


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """The log file, and each one it rotates to, is created 0600: it holds task text and model names."""

    def _open(self) -> io.TextIOWrapper:
        fd = open_private(Path(self.baseFilename), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        return io.open(fd, "a", encoding=self.encoding, errors=self.errors)  # noqa: UP020 - typed as the base's


# The handlers setup_logging added to the root logger: a second call replaces them, and leaves others' alone.
_OURS: list[logging.Handler] = []


def setup_logging(path: Path, level: str, secrets: list[str], *, stderr: bool = False) -> None:
    root = logging.getLogger()
    for h in _OURS:
        root.removeHandler(h)
    _OURS.clear()
    was = ensure_private_dir(path.parent)  # the data dir: this user's alone (an older one is tightened)
    handler: logging.Handler = PrivateRotatingFileHandler(path, maxBytes=5_000_000, backupCount=2)
    handlers = [handler]
    if stderr:
        handlers.append(logging.StreamHandler())
    redactor = Redactor(secrets)
    for h in handlers:
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        h.addFilter(redactor)
        _OURS.append(h)
        root.addHandler(h)
    root.setLevel(getattr(logging, level, logging.INFO))
    for noisy in ("nats", "LiteLLM", "litellm", "httpx", "httpcore", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if was is not None:
        logging.getLogger(__name__).warning(
            "the data dir %s was open to other users (mode %03o): now 0700, its files 0600", path.parent, was
        )
