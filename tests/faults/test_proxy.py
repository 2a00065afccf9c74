"""The fault proxy over real sockets: each fault has the shape the client would meet on a real network."""

from __future__ import annotations

import base64
import math
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from qbo_local.emulator import EmulatorServer
from qbo_local.faults import FaultProxy, ProxyFault


class Upstream(ThreadingHTTPServer):
    """Answers every POST with a fixed body and records what it was sent."""

    daemon_threads = True
    body = b"x" * 200

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes]] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless told to close: proves the proxy asks it to
    server: Upstream

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while size := int(self.rfile.readline(), 16):
                body += self.rfile.read(size + 2)[:-2]
            self.rfile.readline()  # the empty line after the last chunk
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.seen.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", upstream.port) as proxy:
        yield proxy


def raw_answer_size(port: int) -> int:
    """The bytes the upstream sends for one request, as the proxy relays them (headers included)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /size HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        answer = b""
        while data := sock.recv(65536):
            answer += data
    return len(answer)


def test_without_faults_each_request_is_forwarded_on_its_own_connection(proxy: FaultProxy, upstream: Upstream) -> None:
    with requests.Session() as session:  # keep-alive on the client side: the proxy still closes every exchange
        answers = [session.post(f"{proxy.url}/r{i}", data=f"body{i}", timeout=5) for i in range(3)]

    assert [a.content for a in answers] == [upstream.body] * 3
    assert all(a.headers["Connection"] == "close" for a in answers)
    assert upstream.seen == [(f"/r{i}", f"body{i}".encode()) for i in range(3)]
    assert (proxy.connections, proxy.forwarded_requests) == (3, 3)


def test_faults_apply_to_the_next_connections_in_order_then_traffic_flows_again(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    proxy.plan(ProxyFault("refuse"), ProxyFault("drop_after_forward"))

    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(requests.post(proxy.url + "/x", data="b", timeout=5).status_code)
        except requests.ConnectionError:
            outcomes.append("error")

    assert outcomes == ["error", "error", 200]
    assert len(upstream.seen) == 2  # refused: never sent; dropped: sent and answered
    assert (proxy.connections, proxy.forwarded_requests) == (3, 2)


def test_drop_after_forward_loses_the_answer_of_a_request_the_upstream_processed(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    proxy.plan(ProxyFault("drop_after_forward"))

    with pytest.raises(requests.ConnectionError) as raised:
        requests.post(proxy.url + "/rotate", data="token=1", timeout=5)

    assert "RemoteDisconnected" in repr(raised.value)
    assert upstream.seen == [("/rotate", b"token=1")]
    assert proxy.forwarded_requests == 1


def test_reset_after_forward_is_a_connection_reset_after_the_upstream_processed(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    proxy.plan(ProxyFault("reset_after_forward"))

    with pytest.raises(requests.ConnectionError) as raised:
        requests.post(proxy.url + "/rotate", data="token=1", timeout=5)

    assert "ConnectionResetError" in repr(raised.value)
    assert upstream.seen == [("/rotate", b"token=1")]


def test_refuse_never_reaches_the_upstream(proxy: FaultProxy, upstream: Upstream) -> None:
    proxy.plan(ProxyFault("refuse"))

    with pytest.raises(requests.ConnectionError):
        requests.post(proxy.url + "/rotate", data="token=1", timeout=5)

    assert upstream.seen == []
    assert (proxy.connections, proxy.forwarded_requests) == (1, 0)


def test_delay_past_the_read_timeout_is_a_timeout_on_a_request_the_upstream_processed(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    proxy.plan(ProxyFault("delay", seconds=1.5), ProxyFault("delay", seconds=0.5))

    with pytest.raises(requests.ReadTimeout):
        requests.post(proxy.url + "/slow", data="a", timeout=(1, 1))
    started = time.monotonic()
    late = requests.post(proxy.url + "/slow", data="b", timeout=(1, 5))

    assert late.content == upstream.body
    assert time.monotonic() - started >= 0.5
    assert upstream.seen == [("/slow", b"a"), ("/slow", b"b")]


def test_a_trickled_answer_outlives_a_per_read_timeout_many_times_over(proxy: FaultProxy, upstream: Upstream) -> None:
    chunk = math.ceil(raw_answer_size(upstream.port) / 20)  # 20 chunks, 19 pauses of 0.2 s: about 3.8 s
    proxy.plan(ProxyFault("trickle", chunk_bytes=chunk, interval=0.2))

    started = time.monotonic()
    answer = requests.post(proxy.url + "/trickle", data="a", timeout=(1, 1))
    elapsed = time.monotonic() - started

    assert answer.content == upstream.body  # every read finished within 1 s...
    assert elapsed > 3  # ...and the call took more than three times that


def test_stop_interrupts_a_held_answer_at_once(upstream: Upstream) -> None:
    proxy = FaultProxy("127.0.0.1", upstream.port).start()
    proxy.plan(ProxyFault("delay", seconds=60))
    failures: list[Exception] = []

    def call() -> None:
        try:
            requests.post(proxy.url + "/held", data="a", timeout=(1, 30))
        except requests.RequestException as error:
            failures.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    while not upstream.seen:
        time.sleep(0.01)
    started = time.monotonic()
    proxy.stop()
    caller.join(5)

    assert time.monotonic() - started < 2
    assert len(failures) == 1 and isinstance(failures[0], requests.ConnectionError)


def test_chunked_request_bodies_are_forwarded_whole(proxy: FaultProxy, upstream: Upstream) -> None:
    answer = requests.post(proxy.url + "/chunked", data=iter([b"ab", b"cd"]), timeout=5)

    assert answer.status_code == 200
    assert upstream.seen == [("/chunked", b"abcd")]


def test_no_upstream_is_a_502() -> None:
    with socket.socket() as bound_not_listening:  # connecting to it is refused, and nobody else can take the port
        bound_not_listening.bind(("127.0.0.1", 0))
        with FaultProxy("127.0.0.1", bound_not_listening.getsockname()[1]) as proxy:
            assert requests.post(proxy.url + "/x", data="a", timeout=5).status_code == 502
            assert (proxy.connections, proxy.forwarded_requests) == (1, 0)


def test_a_dropped_refresh_answer_leaves_strict_rotation_with_a_consumed_token() -> None:
    """The shape of issue 9's case 3, against the emulator: the client never saw the new token set."""
    with EmulatorServer().start() as intuit, FaultProxy("127.0.0.1", intuit.port) as proxy:
        requests.post(intuit.url + "/_emulator/clients", json={"client_id": "c", "client_secret": "s"}, timeout=5)
        grant = requests.post(
            intuit.url + "/_emulator/grants", json={"client_id": "c", "realm_id": "9341453050000001"}, timeout=5
        ).json()["grants"][0]
        auth = {"Authorization": "Basic " + base64.b64encode(b"c:s").decode()}
        form = {"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]}
        proxy.plan(ProxyFault("drop_after_forward"))

        with pytest.raises(requests.ConnectionError):
            requests.post(proxy.url + "/oauth2/v1/tokens/bearer", data=form, headers=auth, timeout=5)
        resent = requests.post(proxy.url + "/oauth2/v1/tokens/bearer", data=form, headers=auth, timeout=5)

        assert resent.status_code == 400 and resent.json()["error"] == "invalid_grant"
