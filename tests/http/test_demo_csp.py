"""The demo page's Content-Security-Policy names the WebSocket origins of the host asked for, and nothing else.

Live mode connects to ``/stream`` on the page's own host; the policy lists that host's ``ws:`` and ``wss:``
origins for browsers whose ``'self'`` does not cover WebSockets. The host comes from the request, so a ``Host``
header carrying anything but host[:port] must not reach the header (it would add a directive of its own).
"""

from __future__ import annotations

import httpx
import pytest

from deepfer.server.demo import CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(
    ("host", "connect_src"),
    [
        ("127.0.0.1:8000", "connect-src 'self' ws://127.0.0.1:8000 wss://127.0.0.1:8000"),
        ("demo.example.org", "connect-src 'self' ws://demo.example.org wss://demo.example.org"),
        ("[::1]:8443", "connect-src 'self' ws://[::1]:8443 wss://[::1]:8443"),
        ("evil.example; script-src *", "connect-src 'self'"),
        ("a.example wss://b.example", "connect-src 'self'"),
    ],
)
def test_the_page_policy_allows_the_stream_of_its_own_host_only(
    client: httpx.Client, host: str, connect_src: str
) -> None:
    response = client.get("/", headers={"Host": host})
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == f"{CONTENT_SECURITY_POLICY}; {connect_src}"


def test_the_docs_keep_the_base_policy(client: httpx.Client) -> None:
    """/docs opens no WebSocket, so its policy stays the base one."""
    assert client.get("/docs").headers["content-security-policy"] == CONTENT_SECURITY_POLICY
