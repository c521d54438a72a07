"""`parse_body`, `ApiRestClient.extract_response`, `ApiClock`, `quote_id` and
`read_environment_once`, on responses and sessions built in memory."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import requests
from requests import Request, Response
from requests.structures import CaseInsensitiveDict

from analytics_assets.source import client as client_module
from analytics_assets.source.client import (
    ApiClock,
    ApiRestClient,
    parse_body,
    quote_id,
    read_environment_once,
)
from analytics_assets.source.errors import MalformedResponseError

URL = "http://api.test/v2/rooms"
ENDPOINT = f"GET {URL}"


def response(content: bytes, content_type: str = "application/json", status: int = 200) -> Response:
    answer = Response()
    answer.status_code = status
    answer._content = content
    answer.headers = CaseInsensitiveDict({"Content-Type": content_type})
    answer.encoding = "utf-8"
    answer.request = Request("GET", URL, params={"room_id": "r-private"}).prepare()
    return answer


class CountingLoads:
    """orjson, counting how often a body is parsed."""

    JSONDecodeError = orjson.JSONDecodeError

    def __init__(self) -> None:
        self.calls = 0

    def loads(self, content: Any) -> Any:
        self.calls += 1
        return orjson.loads(content)


def test_extract_response_parses_the_body_once_and_hands_it_on_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counting = CountingLoads()
    monkeypatch.setattr(client_module, "orjson", counting)
    body = {"limit": 2, "data": [{"id": "r1"}, {"id": "r2"}], "last": "r2"}
    rest = ApiRestClient(base_url="http://api.test", session=requests.Session())
    assert rest.extract_response(response(orjson.dumps(body)), "$") == [body]
    assert counting.calls == 1


def test_parse_body_keeps_integers_up_to_64_bits_exact() -> None:
    """orjson reads integers exactly up to 64 bits (counts, sizes and durations of this API
    are far below), larger ones as floats; the standard library reads what orjson refuses."""
    body = b'{"total": 18446744073709551615, "size": -9223372036854775808, "x": NaN}'
    assert parse_body(response(body)) == {
        "total": 18446744073709551615,
        "size": -9223372036854775808,
        "x": pytest.approx(float("nan"), nan_ok=True),
    }


def test_a_200_with_an_html_page_is_malformed_naming_the_endpoint_and_showing_the_html() -> None:
    html = b"<html><body><h1>502 Bad Gateway</h1>\n<p>nginx</p></body></html>"
    with pytest.raises(MalformedResponseError) as raised:
        parse_body(response(html, "text/html"))
    message = str(raised.value)
    assert ENDPOINT in message
    assert "answered 200" in message
    assert "<html><body><h1>502 Bad Gateway</h1> <p>nginx</p>" in message
    assert "r-private" not in message  # the query is not named


def test_a_cut_off_json_body_is_malformed_without_showing_the_body() -> None:
    cut = b'{"limit": 100, "data": [{"id": "r1", "name": "Dr Alice Customer-Private", "cust'
    with pytest.raises(MalformedResponseError) as raised:
        parse_body(response(cut, "application/json; charset=utf-8"))
    message = str(raised.value)
    assert ENDPOINT in message
    assert "not JSON" in message
    assert "Alice" not in message
    assert '"limit"' not in message


@pytest.mark.parametrize("kind", ["text/plain", "application/octet-stream", ""])
def test_a_body_that_is_neither_json_nor_a_page_is_not_shown(kind: str) -> None:
    """An API that mislabels its answer may still be sending customers' data."""
    body = b"id,name\nr1,Dr Alice Customer-Private\n"
    with pytest.raises(MalformedResponseError) as raised:
        parse_body(response(body, kind))
    assert "not JSON" in str(raised.value) and "Alice" not in str(raised.value)


def test_a_json_list_is_malformed_where_an_object_was_due() -> None:
    with pytest.raises(MalformedResponseError) as raised:
        parse_body(response(b'[{"id": "r1"}]'))
    assert str(raised.value) == f"{ENDPOINT} answered list where a JSON object was due"


def test_api_clock_keeps_the_newest_date_and_ignores_garbage() -> None:
    clock = ApiClock()
    assert clock.now() is None
    clock.observe("Wed, 17 Jul 2024 11:00:05 GMT")
    clock.observe("Wed, 17 Jul 2024 10:59:00 GMT")  # an older answer, arriving later
    clock.observe("not a date")
    clock.observe("")
    clock.observe(None)
    clock.observe("Wed, 17 Jul 2024 12:00:00 -0000")  # no zone: unreadable as a time
    assert clock.now() == datetime(2024, 7, 17, 11, 0, 5, tzinfo=UTC)
    clock.observe("Wed, 17 Jul 2024 11:00:06 GMT")
    assert clock.now() == datetime(2024, 7, 17, 11, 0, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("6470a1e2f1c2a3b4c5d6e7f8", "6470a1e2f1c2a3b4c5d6e7f8"),
        ("a/b", "a%2Fb"),
        ("room?x=1#frag", "room%3Fx%3D1%23frag"),
        ("my room", "my%20room"),
        ("../admin", "..%2Fadmin"),
    ],
)
def test_quote_id_keeps_an_id_one_path_segment(value: str, quoted: str) -> None:
    assert quote_id(value) == quoted


def _clear_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy or CA bundle of this machine's own environment."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def test_environment_settings_are_read_once_and_kept_on_the_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Proxy and CA bundle of the environment, as requests would find them for the API's host,
    are kept on the session; the environment is not scanned again for each request."""
    _clear_proxy_environment(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/corp-ca.pem")
    session = requests.Session()
    read_environment_once(session, "https://api.100ms.live")
    assert session.trust_env is False
    assert session.proxies == {"https": "http://proxy.corp:3128"}
    assert session.verify == "/etc/corp-ca.pem"
    monkeypatch.setenv("HTTPS_PROXY", "http://elsewhere:1")  # read once: not seen any more
    settings = session.merge_environment_settings(
        "https://api.100ms.live/v2/rooms", {}, None, None, None
    )
    assert settings["proxies"] == {"https": "http://proxy.corp:3128"}


def test_no_proxy_naming_the_api_host_keeps_requests_direct(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _clear_proxy_environment(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "api.100ms.live")
    session = requests.Session()
    read_environment_once(session, "https://api.100ms.live")
    assert session.proxies == {}
    assert session.verify is True


def test_the_api_client_reads_the_environment_once() -> None:
    """The run's client is made with `read_environment_once`: requests does not scan the
    environment again for each of its requests."""
    from requests.auth import HTTPBasicAuth

    from analytics_assets.source.client import AnalyticsApiClient
    from analytics_assets.source.retries import RetryPolicy

    client = AnalyticsApiClient(
        "http://api.test", HTTPBasicAuth("u", "p"), policy=RetryPolicy(), max_pages=10, workers=2
    )
    try:
        assert client.rest.session.trust_env is False
    finally:
        client.close()
