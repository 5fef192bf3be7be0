"""The server domain's own errors: raised by the domain and the store, which know no HTTP;
``http/errors.py`` maps each class to its status code in one table."""

from __future__ import annotations


class DomainError(Exception):
    """A refusal the client can read: ``str(error)`` is the whole message."""


class NotFound(DomainError):
    """No such record."""


class Conflict(DomainError):
    """The request contradicts the current state (e.g. an agent still running tests)."""


class Invalid(DomainError):
    """The request is well-formed but cannot be taken as it is."""


class Unstorable(Invalid):
    """A value the store cannot write (e.g. text that is not valid Unicode): nothing was changed."""


class TooLarge(DomainError):
    """A value over a configured limit (e.g. a plan over ``max_plan_bytes``)."""


class Unauthorized(DomainError):
    """No valid token. ``challenge``: the answer names the scheme to use (``WWW-Authenticate``)."""

    def __init__(self, message: str, challenge: bool = False) -> None:
        super().__init__(message)
        self.challenge = challenge


class Forbidden(DomainError):
    """A valid token whose role may not do this."""


class Gone(DomainError):
    """What was asked for existed but was removed on purpose (e.g. by a retention setting)."""


class NoSpace(DomainError):
    """The server's disk is full: nothing was kept."""
