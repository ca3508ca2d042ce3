"""One short line for an error from nats-py, and a URL fit to show: what a user reads, never a secret."""

from __future__ import annotations

from urllib.parse import urlparse


def reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "authorization" in text.lower() or "auth" in type(exc).__name__.lower():
        return "authorization failed (check nats.token / user / password / creds)"
    return text.splitlines()[0][:200]


def is_auth(exc: BaseException) -> bool:
    """Whether nats-py's error is a refused login (it raises those as plain errors, known by their text)."""
    text = str(exc).lower()
    return "authorization" in text or "authentication" in text or "auth" in type(exc).__name__.lower()


def safe_url(url: str) -> str:
    """A URL without user info (it may hold a password or token)."""
    out = []
    for u in url.split(","):
        p = urlparse(u.strip())
        host = p.hostname or ""
        out.append(f"{p.scheme}://{host}" + (f":{p.port}" if p.port else ""))
    return ",".join(out)
