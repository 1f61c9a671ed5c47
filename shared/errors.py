"""The rlfleet error tree.

    RlfleetError
    ├── DecodeError             a body that is not valid rlfleet MessagePack (-> 422 / 413)
    └── ServiceError            an answer from a service that is not a success
        ├── InvalidRequest      422 / 400: bad input; nothing changed
        │   └── PayloadTooLarge 413: the body is over the service's size limit
        ├── Unauthorized        401: missing or wrong bearer token
        ├── NotFound            404: unknown table (or other resource)
        ├── Conflict            409: a table exists with a different config
        ├── RateLimited         429: the rate limiter did not admit the request before its timeout
        ├── ServiceUnavailable  503 / other 5xx: the service or what it depends on is down
        │   └── InsufficientStorage 507: the replay has no memory left for what was asked
        └── ConnectionFailed    the service could not be reached at all (after retries)

Callers catch by type, never by matching message strings.
"""

from __future__ import annotations


class RlfleetError(Exception):
    """Base of every error rlfleet raises on purpose."""


class DecodeError(RlfleetError, ValueError):
    """The bytes are not valid rlfleet MessagePack (see CONTRACT.md)."""


class ServiceError(RlfleetError):
    """A service answered with an error status (or could not be reached)."""

    status_code: int | None = None

    def __init__(self, detail: str, *, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code


class InvalidRequest(ServiceError):
    status_code = 422


class PayloadTooLarge(InvalidRequest):
    status_code = 413


class Unauthorized(ServiceError):
    status_code = 401


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class RateLimited(ServiceError):
    """The request timed out waiting for the rate limiter; nothing was stored or counted."""

    status_code = 429

    def __init__(self, detail: str, *, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(detail, **kwargs)
        self.retry_after = retry_after


class ServiceUnavailable(ServiceError):
    status_code = 503


class InsufficientStorage(ServiceUnavailable):
    """The replay could not allocate a table's arrays; nothing was stored."""

    status_code = 507


class ConnectionFailed(ServiceError):
    """The service could not be reached (connection refused, reset, DNS...) after retries."""


_BY_STATUS: dict[int, type[ServiceError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
    429: RateLimited,
    507: InsufficientStorage,
}


def error_for_status(status_code: int, detail: str) -> ServiceError:
    """The typed error for an HTTP error status."""
    cls = _BY_STATUS.get(status_code)
    if cls is None:
        cls = ServiceUnavailable if status_code >= 500 else InvalidRequest
    return cls(detail, status_code=status_code)
