"""A loopback TCP proxy that breaks HTTP exchanges the way real networks do, one connection at a time.

    with EmulatorServer().start() as intuit, FaultProxy("127.0.0.1", intuit.port).start() as proxy:
        proxy.plan(ProxyFault("drop_after_forward"))
        requests.post(proxy.url + "/oauth2/v1/tokens/bearer", ...)  # ConnectionError, yet Intuit rotated

Every accepted connection carries exactly one request: the proxy rewrites the request's and the answer's
`Connection` header to `close` and closes both sides after one exchange, so planned faults map 1:1 onto
requests. Each accepted connection takes the next planned fault (FIFO) when it is accepted; connections
with none queued are forwarded untouched (the answer streams through as it arrives).

The faults, and what the client sees:
- delay: the request is forwarded, the whole answer read, held `seconds`, then relayed.
- trickle: the answer is relayed `chunk_bytes` at a time with `interval` between chunks, so every socket
  read is short while the whole answer is long (a per-read timeout does not bound the call).
- drop_after_forward: the upstream receives and answers the request; the answer is discarded and the client
  connection closed cleanly (FIN) with no answer bytes: RemoteDisconnected / "Connection aborted".
- reset_after_forward: the same, but closed with SO_LINGER 0, so the client gets ECONNRESET.
- refuse: the client connection is reset (SO_LINGER 0) at once, before reading anything, and the upstream is
  never contacted: the request was certainly not processed. Note that the TCP handshake has already
  completed, so the client sees a reset of an open connection, not ECONNREFUSED at connect(); for a true
  refusal point the client at a port nobody listens on.

Stdlib only; the sleeps wait on an Event, so stop() interrupts them.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self, get_args

FaultKind = Literal["delay", "trickle", "drop_after_forward", "reset_after_forward", "refuse"]

_MAX_HEAD = 64 * 1024
_HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection"}
_BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass(frozen=True)
class ProxyFault:
    kind: FaultKind
    seconds: float = 0.0  # delay: hold the upstream's answer this long before relaying it
    chunk_bytes: int = 1  # trickle: relay the answer this many bytes at a time...
    interval: float = 0.0  # ...sleeping this long between chunks

    def __post_init__(self) -> None:
        if self.kind not in get_args(FaultKind):
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {get_args(FaultKind)}")
        if self.chunk_bytes < 1 or self.seconds < 0 or self.interval < 0:
            raise ValueError("chunk_bytes must be at least 1; seconds and interval must not be negative")


class _Closed(Exception):
    """The peer closed before a whole HTTP message head or body arrived."""


class _Reader:
    """Buffered reads off a socket, enough to find where one HTTP/1.1 message ends."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def _fill(self) -> None:
        data = self._sock.recv(65536)
        if not data:
            raise _Closed
        self._buffer += data

    def _take(self, n: int) -> bytes:
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def until(self, marker: bytes) -> bytes:
        while (end := self._buffer.find(marker)) < 0:
            if len(self._buffer) > _MAX_HEAD:
                raise _Closed
            self._fill()
        return self._take(end + len(marker))

    def exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._fill()
        return self._take(n)

    def rest(self) -> Iterator[bytes]:
        """Everything up to the peer's close (it was asked to close after this message)."""
        if self._buffer:
            yield self._take(len(self._buffer))
        while data := self._sock.recv(65536):
            yield data


def _close_connection(head: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """The message head with `Connection: close` instead of any hop-by-hop header, and its fields."""
    start, *lines = head[:-4].split(b"\r\n")
    fields = {}
    kept = [start]
    for line in lines:
        raw_name, _, value = line.partition(b":")
        name = raw_name.strip().lower()
        fields[name] = value.strip()
        if name not in _HOP_BY_HOP:
            kept.append(line)
    kept.append(b"Connection: close")
    return b"\r\n".join(kept) + b"\r\n\r\n", fields


def _read_request(reader: _Reader) -> bytes:
    head, fields = _close_connection(reader.until(b"\r\n\r\n"))
    if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
        body = bytearray()
        while True:
            size_line = reader.until(b"\r\n")
            body += size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:  # then optional trailer fields, then an empty line
                while (line := reader.until(b"\r\n")) != b"\r\n":
                    body += line
                return head + bytes(body) + b"\r\n"
            body += reader.exactly(size + 2)
    return head + reader.exactly(int(fields.get(b"content-length", b"0")))


def _abort(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN, so the peer sees ECONNRESET."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FaultProxy:
    """See the module docstring. connections: accepted so far; forwarded_requests: fully written upstream."""

    def __init__(self, upstream_host: str, upstream_port: int, *, listen_port: int = 0) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listen_port = listen_port
        self._faults: collections.deque[ProxyFault] = collections.deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        self.connections = 0
        self.forwarded_requests = 0
        # (fault kind, the request's bytes) for every request a fault was applied to: a soak maps them back
        # to the connection whose refresh token they carried.
        self.faulted_requests: list[tuple[str, bytes]] = []
        self.url = ""

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        if self._listener is None:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self._listen_port))
            listener.listen(64)
            listener.settimeout(0.05)  # the accept loop polls the stop flag this often
            self._listener = listener
            self._stopping.clear()
            self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
            self._acceptor = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
            self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(5)
            self._acceptor = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, workers = list(self._open), list(self._workers)
        for sock in sockets:  # wakes workers blocked in recv
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for worker in workers:
            worker.join(5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- faults ----------------------------------------------------------------------------------------

    def plan(self, *faults: ProxyFault) -> None:
        """Queue faults; each applies to the next new client connection, in order."""
        with self._lock:
            self._faults.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    # -- the work --------------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                self.connections += 1
                fault = self._faults.popleft() if self._faults else None
                worker = threading.Thread(
                    target=self._serve, args=(client, fault), name="fault-proxy-conn", daemon=True
                )
                self._workers.add(worker)
                self._open.add(client)
            worker.start()

    def _serve(self, client: socket.socket, fault: ProxyFault | None) -> None:
        upstream: socket.socket | None = None
        try:
            if fault is not None and fault.kind == "refuse":
                _abort(client)
                return
            request = _read_request(_Reader(client))
            try:
                upstream = socket.create_connection(self._upstream)
            except OSError:
                client.sendall(_BAD_GATEWAY)
                return
            with self._lock:
                self._open.add(upstream)
            upstream.sendall(request)
            with self._lock:
                self.forwarded_requests += 1
                if fault is not None:
                    self.faulted_requests.append((fault.kind, request))
            answer = _Reader(upstream)
            head, _ = _close_connection(answer.until(b"\r\n\r\n"))
            if fault is None:
                client.sendall(head)
                for data in answer.rest():
                    client.sendall(data)
            else:
                self._relay_with(fault, client, head + b"".join(answer.rest()))
        except (OSError, _Closed, ValueError):
            pass  # a peer went away, sent something unparseable, or the proxy is stopping: close both sides
        finally:
            with self._lock:
                self._open.discard(client)
                if upstream is not None:
                    self._open.discard(upstream)
                self._workers.discard(threading.current_thread())
            for sock in (client, upstream):
                if sock is not None:
                    sock.close()

    def _relay_with(self, fault: ProxyFault, client: socket.socket, answer: bytes) -> None:
        if fault.kind == "drop_after_forward":
            client.shutdown(socket.SHUT_RDWR)
        elif fault.kind == "reset_after_forward":
            _abort(client)
        elif fault.kind == "delay":
            if not self._stopping.wait(fault.seconds):
                client.sendall(answer)
        else:  # trickle
            for offset in range(0, len(answer), fault.chunk_bytes):
                if offset and self._stopping.wait(fault.interval):
                    return
                client.sendall(answer[offset : offset + fault.chunk_bytes])
