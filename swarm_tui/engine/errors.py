"""Errors that carry a one-line message and an exit code for the CLI."""

from __future__ import annotations

from typing import Final

# Every exit code of every command, in one table: the README's "Exit codes" table is this one (a test compares
# them), and every error below takes its code from here.
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
EXIT_PIPE: Final = 141  # 128 + SIGPIPE, what cat, seq and git give when the reader leaves
EXIT_CODES: Final[dict[int, str]] = {
    EXIT_OK: "done",
    EXIT_FAILED: "failed or refused: the bus unreachable, no such task, decision or worker, a decision no longer "
    "pending; a refusal by the running engine",
    EXIT_USAGE: "bad usage or bad configuration: an unknown command, option or key, a value out of its range "
    "(one line names it and what is allowed)",
    EXIT_INTERRUPTED: "interrupted (ctrl+c)",
    EXIT_PIPE: "standard output was closed before everything was written (`swarm-tui status | head -1`); "
    "nothing more is printed",
}


class SwarmError(Exception):
    """A failure the user should read as one line; ``code`` is the process exit code (``EXIT_CODES``)."""

    code = EXIT_FAILED

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ConfigError(SwarmError):
    code = EXIT_USAGE


class UsageError(SwarmError):
    code = EXIT_USAGE


class BusError(SwarmError):
    code = EXIT_FAILED


class Unreachable(BusError):
    """Nothing answers at the bus's address, or not in time (also a leaf's hub over its link)."""


class Refused(BusError):
    """The server refused this login (its token, user, password or creds)."""


class Denied(BusError):
    """The login may not do what was asked (the server's permissions for it)."""


class NotThisServer(BusError):
    """The server on the embedded server's port is not this data dir's: nothing was sent to it."""


class TooLarge(BusError):
    """A message over the server's or the stream's size limit: sending it again cannot succeed."""


class InvalidMessage(ValueError):
    """A message on the bus that does not decode to a known, valid type."""


class Refusal(str):
    """Why something may not go ahead, in one line. Where a check returns ``Refusal | None``, None means it may.

    A ``str`` subclass so it reads, logs and serialises as its text (``info()`` fields and events carry the
    text unchanged); the type is what says "a reason, never empty": ``refusal("")`` is a bug, caught at once.
    """

    __slots__ = ()

    def __new__(cls, reason: str) -> Refusal:
        if not reason:
            raise ValueError("a refusal needs its reason")
        return super().__new__(cls, reason)
