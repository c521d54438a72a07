"""What can go wrong with the analytics API, as errors that name the endpoint and the cause and
never a secret: no token, no query string (ids, filters), no credentials a URL may carry."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from requests import Response


def endpoint_of(request: Any) -> str:
    """`GET https://host/v2/path`: the method and URL without the query and without
    credentials a URL may carry (`user:password@`)."""
    url = urlsplit(str(request.url))
    port = f":{url.port}" if url.port else ""
    return f"{request.method} {url.scheme}://{url.hostname}{port}{url.path}"


def host_of(request: Any) -> str:
    """The host and port, never credentials a URL may carry."""
    url = urlsplit(str(request.url))
    return f"{url.hostname}:{url.port}" if url.port else str(url.hostname)


class AnalyticsApiError(RuntimeError):
    """The API answered something we cannot use; the message names the endpoint."""


class ApiHttpError(AnalyticsApiError):
    """The API answered an error status; the message carries its `message` and `details`
    (`{"code": 400, "message": "...", "details": ["type is invalid"]}`)."""

    def __init__(self, endpoint: str, status: int, message: str, details: list[str]) -> None:
        self.endpoint = endpoint
        self.status = status
        self.api_message = message
        self.details = details
        said = f": {message}" if message else ""
        more = f" (details: {'; '.join(details)})" if details else ""
        super().__init__(f"{endpoint} answered {status}{said}{more}")

    @classmethod
    def from_response(cls, response: Response) -> ApiHttpError:
        message, details = error_body(response)
        return cls(endpoint_of(response.request), response.status_code, message, details)


def error_body(response: Response) -> tuple[str, list[str]]:
    """The API's `message` and `details` (strings), or the reason phrase when the body is not
    the API's JSON error (a proxy's page)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return str(response.reason or ""), []
    details = body.get("details") or []
    if not isinstance(details, list):
        details = [details]
    return str(body.get("message") or response.reason or ""), [str(d) for d in details]


class MalformedResponseError(AnalyticsApiError):
    """A success status with a body that is not the JSON object the endpoint returns."""


class ApiUnreachableError(AnalyticsApiError):
    """The API's host could not be reached, or its answer was cut off, after every retry."""


class RateLimitedError(AnalyticsApiError):
    """The API kept answering 429 for longer than `rate_limit_max_wait`."""


class RepeatingCursorError(AnalyticsApiError):
    """The API handed back a cursor, or a page, it had already given: following it would never
    end. The message names the endpoint."""


class EndlessPagesError(AnalyticsApiError):
    """More pages than any real listing has: stop rather than page forever."""
