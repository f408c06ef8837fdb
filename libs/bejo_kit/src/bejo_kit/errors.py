"""Problems (RFC 9457) raised by service code and rendered by the HTTP app as problem+json."""

from __future__ import annotations

from typing import Any

from bejo_contracts.errors import DomainError, NotPermitted


class Problem(Exception):
    """An error the client can act on. `code` is a stable machine-readable name."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {
            "type": f"https://bejo.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }


class BadRequest(Problem):
    pass


class ValidationProblem(Problem):
    """Invalid input. `errors` names each field: [{"field": "price", "message": "...", "type": "..."}]."""

    status = 422
    code = "validation_error"
    title = "Invalid input"

    def __init__(self, detail: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(detail, errors=errors)

    @classmethod
    def field(cls, field: str, message: str, kind: str = "invalid") -> ValidationProblem:
        return cls(f"{field}: {message}", [{"field": field, "message": message, "type": kind}])


class Unauthorized(Problem):
    status = 401
    code = "unauthorized"
    title = "Authentication required"


class Forbidden(Problem):
    status = 403
    code = "forbidden"
    title = "Not allowed"


class NotFound(Problem):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(Problem):
    status = 409
    code = "conflict"
    title = "Conflict"


class PayloadTooLarge(Problem):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class UnsupportedMediaType(Problem):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class TooManyRequests(Problem):
    status = 429
    code = "rate_limited"
    title = "Too many requests"


class ServiceUnavailable(Problem):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"


def problem_for(error: DomainError) -> Problem:
    """The one place a domain error becomes a problem: the status by kind, code and facts kept."""
    # IllegalTransition and any other broken rule: the request conflicts with the current state.
    kind: type[Problem] = Forbidden if isinstance(error, NotPermitted) else Conflict
    return kind(error.detail, code=error.code, **error.extra)
