"""The server domain's own errors: raised by the controller and the store, which know no HTTP;
``app.py`` maps each class to its status code in one place."""

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
