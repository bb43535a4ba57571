"""One error base for the whole service; the API renders every subclass the same way.

The type says what went wrong and which HTTP status it maps to, so no layer
below the routes needs to know about HTTP and nothing matches on message text.
"""

from __future__ import annotations

from typing import Any


class TrialforgeError(Exception):
    """Base of every error we raise on purpose; `detail` is safe to show a user."""

    status_code = 500

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail if detail is not None else message


class NotFound(TrialforgeError):
    status_code = 404


class Conflict(TrialforgeError):
    """Well formed, but the current state forbids it (e.g. resuming a running search)."""

    status_code = 409


class InvalidSpec(TrialforgeError):
    """A search spec (or the recipe it names) cannot be accepted; `detail` names the field."""

    status_code = 422


class InvalidRequest(TrialforgeError):
    """A query parameter or form field out of its allowed values."""

    status_code = 422


class Unauthorized(TrialforgeError):
    status_code = 401


class SignInRequired(Unauthorized):
    """A read on a private server without the token; dashboard pages go to /login."""


class SchemaOutdated(TrialforgeError):
    """The database is behind the code's migrations; the message says how to upgrade."""

    status_code = 503


class EditRejected(TrialforgeError):
    """A proposed edit cannot become a trial commit.

    `label` is the trial's label (`illegal_edit` or `patch_rejected`) and the
    message is the reason recorded with it, so the agent learns why.
    """

    status_code = 422

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(reason)
        self.label = label
        self.reason = reason
