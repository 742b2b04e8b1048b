"""The error vocabulary shared by the CLI, the JSON API and the console.

Each error carries a stable ``code`` for scripts and the HTTP status the API answers with,
so one service function can refuse once and every front end reports it the same way.
"""

from __future__ import annotations


class DevupdateError(Exception):
    """A refusal with a reason a person can act on."""

    status = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class SettingsError(DevupdateError):
    code = "bad-settings"


class NotFound(DevupdateError):
    status = 404
    code = "not-found"


class Conflict(DevupdateError):
    """A precondition does not hold (e.g. approving a rule with no pending version)."""

    status = 409
    code = "precondition-failed"


class QuotaFull(DevupdateError):
    status = 507
    code = "quota-exceeded"


class TooLarge(DevupdateError):
    status = 413
    code = "too-large"
