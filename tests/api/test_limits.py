"""Resend limits: per IP and per authenticated user, moving windows in Redis; every request counts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import Request

from tests.api.conftest import only_error

URL = "/v1/orders/resend-email"
EXCEEDED = "Limit for this action exceeded"


def body(identifier: str, **extra: Any) -> dict[str, Any]:
    return {"data": {"order": identifier, **extra}}


async def _burst(app: FastAPI, requests: list[tuple[dict[str, str], dict[str, Any]]]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4711))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        return list(await asyncio.gather(*(client.post(URL, json=b, headers=h) for h, b in requests)))


def burst(app: FastAPI, requests: list[tuple[dict[str, str], dict[str, Any]]]) -> list[httpx.Response]:
    return asyncio.run(_burst(app, requests))


def assert_limited(response: httpx.Response | Any) -> None:
    assert response.status_code == 429
    assert only_error(response)["detail"] == EXCEEDED
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_twenty_concurrent_resends_from_one_user_let_exactly_five_through(
        app_with_limits: Callable[..., FastAPI], world: dict[str, Any]) -> None:
    app = app_with_limits()  # the contract's defaults: 5/minute per user, 60/minute per IP
    coorg, owner = world["headers"]["coorg"], world["headers"]["owner"]
    responses = burst(app, [(coorg, body(world["orders"]["completed"]))] * 20)
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] * 5 + [429] * 15
    for response in responses:
        if response.status_code == 429:
            assert_limited(response)
    # Another user is unaffected by the first one's spent quota.
    second = burst(app, [(owner, body(world["orders"]["completed"]))] * 5)
    assert [r.status_code for r in second] == [202] * 5


def test_the_61st_request_from_one_ip_is_refused_whatever_the_user(
        app_with_limits: Callable[..., FastAPI], world: dict[str, Any],
        token_for: Callable[..., dict[str, str]]) -> None:
    app = app_with_limits()
    admins = [token_for(f"admin{i}@example.org", admin=True) for i in range(13)]
    identifier = world["orders"]["placed"]
    with TestClient(app) as client:
        codes = [client.post(URL, json=body(identifier), headers=admins[i // 5]).status_code for i in range(60)]
        assert codes == [202] * 60
        last = client.post(URL, json=body(identifier), headers=admins[12])
    assert_limited(last)


def test_the_ip_limit_comes_before_authentication(
        app_with_limits: Callable[..., FastAPI], world: dict[str, Any]) -> None:
    app = app_with_limits(per_ip="3/minute")
    with TestClient(app) as client:
        codes = [client.post(URL, json=body("x")).status_code for _ in range(3)]
        assert codes == [401] * 3  # unauthenticated requests count too
        assert_limited(client.post(URL, json=body("x")))
        assert_limited(client.post(URL, json=body(world["orders"]["placed"]), headers=world["headers"]["coorg"]))


def test_the_user_field_in_the_body_changes_nothing(
        app_with_limits: Callable[..., FastAPI], world: dict[str, Any]) -> None:
    app = app_with_limits()
    with TestClient(app) as client:
        codes = [client.post(URL, json=body(world["orders"]["placed"], user=f"fresh-key-{i}"),
                             headers=world["headers"]["coorg"]).status_code for i in range(6)]
    assert codes == [202] * 5 + [429]


def test_every_request_counts_even_refused_ones(
        app_with_limits: Callable[..., FastAPI], world: dict[str, Any]) -> None:
    app = app_with_limits()
    coorg = world["headers"]["coorg"]
    with TestClient(app) as client:
        refused = [
            client.post(URL, content=b"{", headers={**coorg, "Content-Type": "application/json"}).status_code,
            client.post(URL, json={"nope": 1}, headers=coorg).status_code,
            client.post(URL, json=body("0" * 32), headers=coorg).status_code,
            client.post(URL, json=body(world["orders"]["pending"]), headers=coorg).status_code,
            client.post(URL, json=body(world["orders"]["placed"]), headers=coorg).status_code,
        ]
        assert refused == [400, 422, 404, 422, 202]
        assert_limited(client.post(URL, json=body(world["orders"]["placed"]), headers=coorg))


def test_user_limit_comes_before_the_body_and_the_order(
        app_with_limits: Callable[..., FastAPI], world: dict[str, Any]) -> None:
    app = app_with_limits(per_user="1/minute")
    stranger = world["headers"]["stranger"]
    with TestClient(app) as client:
        assert client.post(URL, json=body(world["orders"]["placed"]), headers=stranger).status_code == 403
        assert_limited(client.post(URL, content=b"{", headers={**stranger, "Content-Type": "application/json"}))


def test_limits_fail_closed_when_redis_is_unreachable(db: Any, world: dict[str, Any]) -> None:
    from api.app import create_app
    from api.ratelimit import resend_limits
    from ticketq.embedded import free_port

    app = create_app(resend_limits(f"redis://127.0.0.1:{free_port()}/0", "60/minute", "5/minute"))
    with TestClient(app) as client:
        response = client.post(URL, json=body(world["orders"]["placed"]), headers=world["headers"]["coorg"])
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert only_error(response)["title"] == "Service Unavailable"


def _request(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "client": (peer, 1234)})


@pytest.mark.parametrize(("trusted", "peer", "forwarded", "expected"), [
    ([], "198.51.100.7", "1.2.3.4", "198.51.100.7"),  # no trusted proxy: the header is ignored
    (["10.0.0.1"], "198.51.100.7", "1.2.3.4", "198.51.100.7"),  # the peer is not a trusted proxy
    (["10.0.0.1"], "10.0.0.1", "1.2.3.4", "1.2.3.4"),
    (["10.0.0.0/8"], "10.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.2", "1.2.3.4"),  # right-most untrusted hop
    (["10.0.0.1"], "10.0.0.1", None, "10.0.0.1"),
    (["10.0.0.1"], "10.0.0.1", "not-an-ip", "10.0.0.1"),
    (["::1"], "::1", "2001:db8::5", "2001:db8::5"),
])
def test_client_ip_believes_forwarded_for_only_from_trusted_proxies(
        monkeypatch: pytest.MonkeyPatch, trusted: list[str], peer: str, forwarded: str | None, expected: str) -> None:
    from api.deps import client_ip
    from core.settings import settings

    monkeypatch.setattr(settings, "trusted_proxies", trusted)
    assert client_ip(_request(peer, forwarded)) == expected


@pytest.mark.parametrize(("ip", "key"), [
    ("198.51.100.7", "198.51.100.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
    ("::ffff:198.51.100.7", "198.51.100.7"),
    ("testclient", "testclient"),
])
def test_ipv6_clients_are_limited_per_64(ip: str, key: str) -> None:
    from api.deps import ip_limit_key

    assert ip_limit_key(ip) == key
