"""Domain errors: what a business rule refuses, with no notion of HTTP.

The kit's HTTP app renders them as problem+json (see `bejo_kit.errors.problem_for`); domain
modules raise these so they stay free of transport classes.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A rule the request breaks. `code` is a stable machine-readable name; `extra` the facts a
    client needs to act (rendered as extra problem fields)."""

    code = "domain_error"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.extra = extra


class IllegalTransition(DomainError):
    """The aggregate's current status does not allow the requested change."""

    code = "illegal_transition"


class NotPermitted(DomainError):
    """This caller may not act on this object (object-level authorisation)."""

    code = "forbidden"
