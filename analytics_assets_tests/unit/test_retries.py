"""`RetryingSession`, `RateGate` and `RetryPolicy` on a scripted transport and a fake clock:
no server, no real sleep."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import NewConnectionError, ProtocolError, ReadTimeoutError

from analytics_assets.source.errors import ApiHttpError, ApiUnreachableError, RateLimitedError
from analytics_assets.source.retries import RateGate, RetryingSession, RetryPolicy
from analytics_assets.source.tokens import ManagementTokenAuth

BASE = "http://api.test:8080"
URL = f"{BASE}/v2/rooms"
ENDPOINT = f"GET {URL}"
TOKEN = "secret-xyz"
RETRY_LOGGER = "analytics_assets.source.retries"


class FakeClock:
    """A monotonic clock that only sleeping moves; every sleep is recorded."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class BrokenBody:
    """A `raw` whose body read fails with urllib3's error after some bytes."""

    def __init__(self, error: Exception, first: bytes = b'{"limit": 100, "da') -> None:
        self.error = error
        self.first = first

    def stream(self, chunk_size: int, decode_content: bool = True) -> Iterator[bytes]:
        yield self.first
        raise self.error

    def close(self) -> None:
        pass


Reply = Callable[[requests.PreparedRequest], requests.Response]


def answer(
    status: int,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: Any = None,
) -> Reply:
    """A reply the transport gives: status, JSON body (or raw bytes) and headers."""

    def reply(request: requests.PreparedRequest) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response.reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
        response.headers = CaseInsensitiveDict(
            {"Content-Type": "application/json", **(headers or {})}
        )
        if raw is not None:
            response.raw = raw
        else:
            data = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
            response.raw = io.BytesIO(data)
        response.url = str(request.url)
        response.request = request
        response.encoding = "utf-8"
        return response

    return reply


def refuse(request: requests.PreparedRequest) -> requests.Response:
    reason = NewConnectionError(
        None,  # type: ignore[arg-type]
        "Failed to establish a new connection: [Errno 111] Connection refused",
    )
    raise requests.ConnectionError(reason, request=request)


def broken_body(request: requests.PreparedRequest) -> requests.Response:
    error = ProtocolError("Connection broken: IncompleteRead(18 bytes read, 982 more expected)")
    return answer(200, raw=BrokenBody(error))(request)


def stalled_body(request: requests.PreparedRequest) -> requests.Response:
    stall = ReadTimeoutError(None, None, "Read timed out.")  # type: ignore[arg-type]
    return answer(200, raw=BrokenBody(stall, b""))(request)


class ScriptedAdapter(HTTPAdapter):
    """Answers each request with the next scripted reply (the last one repeats)."""

    def __init__(self, script: list[Reply]) -> None:
        super().__init__()
        self.script = script
        self.sent: list[requests.PreparedRequest] = []
        self.headers_sent: list[dict[str, str | bytes]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        self.headers_sent.append(dict(request.headers))
        reply = self.script[min(len(self.sent), len(self.script)) - 1]
        return reply(request)


def session_for(
    script: list[Reply],
    policy: RetryPolicy | None = None,
    *,
    clock: FakeClock | None = None,
    gate: RateGate | None = None,
    on_date: Callable[[str | None], None] | None = None,
    sleep: Callable[[float], None] | None = None,
    token_auth: ManagementTokenAuth | None = None,
) -> tuple[RetryingSession, ScriptedAdapter, FakeClock]:
    clock = clock or FakeClock()
    session = RetryingSession(
        policy or POLICY,
        gate=gate,
        on_date=on_date,
        token_auth=token_auth,
        monotonic=clock.monotonic,
        sleep=sleep or clock.sleep,
    )
    session.trust_env = False
    adapter = ScriptedAdapter(script)
    session.mount("http://", adapter)
    return session, adapter, clock


#: The specification's policy, written out: not what the environment says.
POLICY = RetryPolicy(
    max_attempts=4, backoff_factor=2.0, max_retry_delay=60.0, rate_limit_max_wait=300.0
)


def get(session: RetryingSession) -> requests.Response:
    return session.get(URL, headers={"Authorization": f"Bearer {TOKEN}"})


def test_policy_backoff_doubles_from_the_factor_and_is_capped() -> None:
    policy = RetryPolicy(backoff_factor=2.0, max_retry_delay=10.0)
    assert [policy.backoff(n) for n in (1, 2, 3, 4, 5)] == [2.0, 4.0, 8.0, 10.0, 10.0]
    assert RetryPolicy(backoff_factor=0.5, max_retry_delay=60.0).backoff(3) == 2.0


def test_a_5xx_then_200_is_retried_after_the_backoff() -> None:
    session, adapter, clock = session_for([answer(502), answer(200, {"data": []})])
    response = get(session)
    assert response.status_code == 200
    assert response.json() == {"data": []}
    assert len(adapter.sent) == 2
    assert clock.sleeps == [2.0]


def test_always_503_gives_four_attempts_then_api_http_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=RETRY_LOGGER)
    session, adapter, clock = session_for([answer(503, {"code": 503, "message": "busy"})])
    with pytest.raises(ApiHttpError) as raised:
        get(session)
    assert raised.value.status == 503
    assert ENDPOINT in str(raised.value)
    assert len(adapter.sent) == 4
    assert clock.sleeps == [2.0, 4.0, 8.0]
    messages = [r.getMessage() for r in caplog.records if r.name == RETRY_LOGGER]
    assert messages == [
        f"{ENDPOINT} answered 503; retrying in 2.0 s (attempt 2 of 4)",
        f"{ENDPOINT} answered 503; retrying in 4.0 s (attempt 3 of 4)",
        f"{ENDPOINT} answered 503; retrying in 8.0 s (attempt 4 of 4)",
    ]


def test_connection_refused_every_time_raises_unreachable_naming_host_and_attempts() -> None:
    session, adapter, clock = session_for([refuse])
    with pytest.raises(ApiUnreachableError) as raised:
        get(session)
    message = str(raised.value)
    assert "api.test:8080" in message
    assert ENDPOINT in message
    assert "Connection refused" in message
    assert message.endswith("(4 attempts)")
    assert len(adapter.sent) == 4
    assert clock.sleeps == [2.0, 4.0, 8.0]


def test_a_body_cut_half_way_is_read_inside_the_retries() -> None:
    session, adapter, clock = session_for([broken_body, answer(200, {"data": [{"id": "r1"}]})])
    response = get(session)
    assert response.json() == {"data": [{"id": "r1"}]}
    assert len(adapter.sent) == 2
    assert clock.sleeps == [2.0]


def test_a_body_cut_every_time_ends_unreachable_saying_incomplete_read() -> None:
    session, adapter, _ = session_for([broken_body])
    with pytest.raises(ApiUnreachableError) as raised:
        get(session)
    assert "IncompleteRead" in str(raised.value)
    assert str(raised.value).endswith("(4 attempts)")
    assert len(adapter.sent) == 4


def test_a_stall_while_reading_the_body_is_retried() -> None:
    session, adapter, clock = session_for([stalled_body, answer(200, {"data": []})])
    assert get(session).json() == {"data": []}
    assert len(adapter.sent) == 2
    assert clock.sleeps == [2.0]


def test_quirk_429_with_retry_after_header_waits_that_long_and_holds_the_shared_gate() -> None:
    clock = FakeClock()
    gate = RateGate(monotonic=clock.monotonic, sleep=clock.sleep)  # another worker's sleeps
    session_sleeps: list[float] = []

    def session_sleep(seconds: float) -> None:
        started = clock.now
        gate.wait()  # meanwhile another worker of the run asks to send: the gate holds it
        session_sleeps.append(seconds)
        clock.now = max(clock.now, started + seconds)  # the two slept side by side

    session, adapter, _ = session_for(
        [answer(429, {"code": 429}, {"Retry-After": "7"}), answer(200, {"ok": 1})],
        clock=clock,
        gate=gate,
        sleep=session_sleep,
    )
    assert get(session).json() == {"ok": 1}
    assert session_sleeps == [7.0]
    assert clock.sleeps == [7.0]  # the other worker waited as long, though it was not told
    assert clock.now == 1007.0
    assert len(adapter.sent) == 2


def test_rate_gate_makes_every_caller_wait_until_the_hold_ends() -> None:
    clock = FakeClock(start=50.0)
    gate = RateGate(monotonic=clock.monotonic, sleep=clock.sleep)
    gate.wait()
    assert clock.sleeps == []  # nothing held: no wait
    gate.hold(7.0)
    gate.hold(3.0)  # a shorter hold does not shorten the pause
    clock.now += 2.0
    gate.wait()
    assert clock.sleeps == [5.0]
    assert clock.now == 57.0
    gate.wait()
    assert clock.sleeps == [5.0]


def test_rate_gate_waits_again_when_another_worker_extends_the_pause() -> None:
    clock = FakeClock()
    gate = RateGate(monotonic=clock.monotonic, sleep=lambda s: extend_once(s))
    extended: list[bool] = []

    def extend_once(seconds: float) -> None:
        clock.sleep(seconds)
        if not extended:
            extended.append(True)
            gate.hold(4.0)  # told of a new 429 while this one slept

    gate.hold(10.0)
    gate.wait()
    assert clock.sleeps == [10.0, 4.0]


def test_quirk_429_with_the_wait_only_in_the_message_waits_45_seconds() -> None:
    limited = answer(429, {"code": 429, "message": "rate limit exceeded, retry after 45 seconds"})
    session, adapter, clock = session_for([limited, answer(200, {"ok": 1})])
    assert get(session).json() == {"ok": 1}
    assert clock.sleeps == [45.0]
    assert len(adapter.sent) == 2


def test_quirk_429_wait_above_max_retry_delay_is_capped() -> None:
    policy = RetryPolicy(max_attempts=4, backoff_factor=2.0, max_retry_delay=30.0)
    limited = answer(429, {"code": 429, "message": "rate limit exceeded, retry after 45 seconds"})
    session, _, clock = session_for([limited, answer(200, {"ok": 1})], policy)
    get(session)
    assert clock.sleeps == [30.0]


def test_quirk_429_retry_after_zero_seconds_waits_at_least_the_backoff() -> None:
    limited = answer(429, {"code": 429, "message": "rate limit exceeded, retry after 0 seconds"})
    session, _, clock = session_for([limited, limited, answer(200, {"ok": 1})])
    get(session)
    assert clock.sleeps == [2.0, 2.0]


def test_quirk_429_forever_raises_rate_limited_once_the_wait_budget_would_be_exceeded() -> None:
    policy = RetryPolicy(
        max_attempts=4, backoff_factor=2.0, max_retry_delay=60.0, rate_limit_max_wait=200.0
    )
    session, adapter, clock = session_for(
        [answer(429, {"code": 429}, {"Retry-After": "30"})], policy
    )
    with pytest.raises(RateLimitedError) as raised:
        get(session)
    # 429s do not count against the 4 attempts: they wait until the budget would be passed
    assert clock.sleeps == [30.0] * 6
    assert len(adapter.sent) == 7
    message = str(raised.value)
    assert ENDPOINT in message
    assert "rate_limit_max_wait=200" in message
    assert "after 180 s" in message


def test_400_is_not_retried_and_carries_the_apis_message_and_details() -> None:
    body = {"code": 400, "message": "bad request", "details": ["type is invalid"]}
    session, adapter, clock = session_for([answer(400, body)])
    with pytest.raises(ApiHttpError) as raised:
        get(session)
    assert len(adapter.sent) == 1
    assert clock.sleeps == []
    error = raised.value
    assert (error.status, error.api_message, error.details) == (
        400,
        "bad request",
        ["type is invalid"],
    )
    assert str(error) == f"{ENDPOINT} answered 400: bad request (details: type is invalid)"


def test_404_raises_api_http_error_with_its_status() -> None:
    session, adapter, _ = session_for([answer(404, {"code": 404, "message": "room not found"})])
    with pytest.raises(ApiHttpError) as raised:
        get(session)
    assert raised.value.status == 404
    assert raised.value.endpoint == ENDPOINT
    assert len(adapter.sent) == 1


def test_the_date_of_every_answer_reaches_on_date() -> None:
    dates: list[str | None] = []
    first, second = "Wed, 17 Jul 2024 11:00:00 GMT", "Wed, 17 Jul 2024 11:00:02 GMT"
    session, _, _ = session_for(
        [answer(500, headers={"Date": first}), answer(200, {"ok": 1}, {"Date": second})],
        on_date=dates.append,
    )
    get(session)
    assert dates == [first, second]


def test_the_policys_timeout_is_sent_when_none_is_given() -> None:
    seen: list[Any] = []

    class Recording(ScriptedAdapter):
        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            seen.append(kwargs.get("timeout"))
            return super().send(request, **kwargs)

    session = RetryingSession(RetryPolicy(timeout=12.5), sleep=FakeClock().sleep)
    session.mount("http://", Recording([answer(200, {"ok": 1})]))
    session.get(URL)
    session.get(URL, timeout=3)
    assert seen == [12.5, 3]


@pytest.mark.parametrize(
    "script",
    [
        [answer(503, {"code": 503, "message": "busy"})],
        [refuse],
        [broken_body],
        [answer(429, {"code": 429, "message": "rate limit exceeded, retry after 45 seconds"})],
        [answer(400, {"code": 400, "message": "bad request", "details": ["type is invalid"]})],
    ],
    ids=["503", "refused", "cut", "429", "400"],
)
def test_no_error_message_or_log_line_holds_the_token(
    script: list[Reply], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    policy = RetryPolicy(
        max_attempts=4, backoff_factor=2.0, max_retry_delay=60.0, rate_limit_max_wait=100.0
    )
    session, adapter, _ = session_for(script, policy)
    with pytest.raises(Exception) as raised:
        get(session)
    assert adapter.sent[0].headers["Authorization"] == f"Bearer {TOKEN}"  # it was sent
    assert TOKEN not in str(raised.value)
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


# ---- the token each attempt carries --------------------------------------------------------


def tokens_sent(adapter: ScriptedAdapter) -> list[str | bytes]:
    """The Authorization header of each attempt, as it was sent (attempts share one request)."""
    return [headers["Authorization"] for headers in adapter.headers_sent]


def minting_auth(clock: FakeClock, lifetime: float = 3600.0) -> ManagementTokenAuth:
    return ManagementTokenAuth(
        access_key="key", secret="s" * 32, lifetime_seconds=lifetime, clock=clock.monotonic
    )


def test_a_retry_after_long_429_waits_carries_a_token_minted_since() -> None:
    clock = FakeClock()
    auth = minting_auth(clock, lifetime=60.0)  # renewed 20 s before it expires
    limited = answer(429, {"code": 429, "message": "slow down"}, {"Retry-After": "50"})
    session, adapter, _ = session_for([limited, answer(200, {"data": []})], clock=clock)
    session.token_auth = auth
    assert session.get(URL, auth=auth).status_code == 200
    first, retried = tokens_sent(adapter)
    assert first != retried  # the first expires at 1060: too close at 1050
    assert retried == f"Bearer {auth.current_token()}"


def test_quirk_a_401_is_tried_once_more_with_a_freshly_minted_token() -> None:
    """The vendor's SDK retries a 401 once with a new token (a token the API stopped taking)."""
    clock = FakeClock()
    auth = minting_auth(clock)
    refused = answer(401, {"code": 401, "message": "token is invalid"})
    session, adapter, _ = session_for([refused, answer(200, {"data": []})], clock=clock)
    session.token_auth = auth
    assert session.get(URL, auth=auth).status_code == 200
    first, renewed = tokens_sent(adapter)
    assert first != renewed and clock.sleeps == []


def test_a_401_with_a_static_token_fails_at_once_and_a_minted_one_after_one_renewal() -> None:
    refused = answer(401, {"code": 401, "message": "token is invalid"})
    static = ManagementTokenAuth(token=TOKEN)
    session, adapter, _ = session_for([refused], token_auth=static)
    with pytest.raises(ApiHttpError, match="answered 401"):
        session.get(URL, auth=static)
    assert len(adapter.sent) == 1
    clock = FakeClock()
    minting = minting_auth(clock)
    session, adapter, _ = session_for([refused], clock=clock, token_auth=minting)
    with pytest.raises(ApiHttpError, match="answered 401"):
        session.get(URL, auth=minting)
    assert len(adapter.sent) == 2


def test_a_200_html_page_from_a_gateway_is_retried_like_a_503(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=RETRY_LOGGER)
    page = answer(200, b"<html>maintenance</html>", {"Content-Type": "text/html"})
    session, adapter, clock = session_for([page, answer(200, {"data": []})])
    assert get(session).json() == {"data": []}
    assert clock.sleeps == [2.0]
    assert "answered 200 with an HTML page" in caplog.text
    # Still a page after every attempt: handed on, and the client says it is not JSON.
    session, adapter, _ = session_for([page])
    assert get(session).headers["Content-Type"] == "text/html"
    assert len(adapter.sent) == 4


def test_a_200_of_malformed_json_is_not_retried() -> None:
    """A whole body that does not parse is the API's answer, not a passing fault (a body cut
    short is: its length says so)."""
    session, adapter, _ = session_for([answer(200, b'{"data": [')])
    assert get(session).status_code == 200
    assert len(adapter.sent) == 1
