"""Logging to a file under the data dir, with every configured secret masked in every record."""

from __future__ import annotations

import logging
import logging.handlers
import re
from pathlib import Path

_KEYLIKE = re.compile(r"\b(sk-or-[A-Za-z0-9_-]{8,}|sk-[A-Za-z0-9_-]{16,})")


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
        except Exception:  # noqa: BLE001
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


def setup_logging(path: Path, level: str, secrets: list[str], *, stderr: bool = False) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_swarm", False):
            root.removeHandler(h)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler: logging.Handler = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=2)
    handlers = [handler]
    if stderr:
        handlers.append(logging.StreamHandler())
    redactor = Redactor(secrets)
    for h in handlers:
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        h.addFilter(redactor)
        h._swarm = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(getattr(logging, level, logging.INFO))
    for noisy in ("nats", "LiteLLM", "litellm", "httpx", "httpcore", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
