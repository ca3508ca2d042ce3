"""Errors that carry a one-line message and an exit code for the CLI."""

from __future__ import annotations


class SwarmError(Exception):
    """A failure the user should read as one line; ``code`` is the process exit code."""

    code = 1

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ConfigError(SwarmError):
    code = 2


class UsageError(SwarmError):
    code = 2


class BusError(SwarmError):
    code = 1


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
