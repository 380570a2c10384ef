"""A local Socket Mode stand-in: Slack's side of a Socket Mode connection on loopback.

- `SocketModeSlackStandIn` is the Web API stand-in (slack_stand_in.py) that also answers
  `apps.connections.open` as Slack does: only for an app-level token (`xapp-…`), with a one-time
  `ws://127.0.0.1:PORT/link/?ticket=…&app_id=…` URL.
- `SocketModeServer` is a small WebSocket server (RFC 6455, standard library only) at that URL. It
  accepts a connection only for a ticket it issued, sends `hello` as Slack does, answers pings with
  pongs, lets a test send envelopes (`slash_commands`, `interactive`, …) and records every text
  message the app sends back (its acks: `{"envelope_id": …, "payload": …}`).

Client frames must be masked and server frames are not (RFC 6455 §5.1); a protocol error closes the
connection with 1002 and is recorded, so a test can assert there were none.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

from slack_stand_in import Call, SlackStandIn

from tests.timeouts import seconds

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 1 << 20
APP_ID = "A0CYTO"

Message = dict[str, Any]


class ProtocolError(Exception):
    pass


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame (what a server sends)."""
    head = bytes([0x80 | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([size])
    elif size < 1 << 16:
        head += bytes([126]) + struct.pack("!H", size)
    else:
        head += bytes([127]) + struct.pack("!Q", size)
    return head + payload


class Connection:
    """One accepted WebSocket connection."""

    def __init__(self, sock: socket.socket, path: str, server: SocketModeServer) -> None:
        self.sock = sock
        self.path = path
        self.server = server
        self.closed = threading.Event()
        self.close_code: int | None = None  # what the client's close frame said
        self.pings = 0
        self._send_lock = threading.Lock()
        self._buffer = b""
        self.thread = threading.Thread(target=self._read_loop, name="socket-mode-stand-in", daemon=True)

    # -- sending --------------------------------------------------------------------------------
    def send_json(self, message: Message) -> None:
        self._send(frame(OP_TEXT, json.dumps(message).encode()))

    def _send(self, data: bytes) -> None:
        with self._send_lock:
            self.sock.sendall(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed.is_set():
            with contextlib.suppress(OSError):
                self._send(frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()))
        self._shutdown()

    def _shutdown(self) -> None:
        self.closed.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    # -- receiving ------------------------------------------------------------------------------
    def _read_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _read_frame(self) -> tuple[bool, int, bytes]:
        b1, b2 = self._read_exact(2)
        if b1 & 0x70:
            raise ProtocolError("reserved bits set without an extension")
        if not b2 & 0x80:
            raise ProtocolError("client frame not masked")
        size = b2 & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._read_exact(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._read_exact(8))[0]
        if size > MAX_MESSAGE:
            raise ProtocolError(f"frame of {size} bytes")
        mask = self._read_exact(4)
        payload = bytes(b ^ m for b, m in zip(self._read_exact(size), itertools.cycle(mask), strict=False))
        opcode = b1 & 0x0F
        if opcode >= 0x8 and (size > 125 or not b1 & 0x80):
            raise ProtocolError("control frame too long or fragmented")
        return bool(b1 & 0x80), opcode, payload

    def _read_loop(self) -> None:
        parts: list[bytes] = []
        try:
            while True:
                fin, opcode, payload = self._read_frame()
                if opcode == OP_PING:
                    self.pings += 1
                    self._send(frame(OP_PONG, payload))
                elif opcode == OP_PONG:
                    continue
                elif opcode == OP_CLOSE:
                    self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    self.close(self.close_code)
                    return
                elif opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                    if (opcode == OP_CONT) != bool(parts):
                        raise ProtocolError("unexpected continuation frame")
                    parts.append(payload)
                    if fin:
                        self.server._received(self, b"".join(parts).decode())
                        parts = []
                else:
                    raise ProtocolError(f"unknown opcode {opcode}")
        except ProtocolError as exc:
            self.server.protocol_errors.append(str(exc))
            self.close(1002, str(exc)[:100])
        except (EOFError, OSError, UnicodeDecodeError):
            self._shutdown()


@dataclass
class SocketModeServer:
    """Slack's Socket Mode endpoint on a free loopback port."""

    app_id: str = APP_ID
    received: list[Message] = field(default_factory=list)  # every JSON message from the app, in order
    connections: list[Connection] = field(default_factory=list)
    protocol_errors: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # handshakes refused, and why

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._tickets: set[str] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="socket-mode-accept", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def issue_url(self) -> str:
        """A one-time URL, as `apps.connections.open` hands out."""
        ticket = str(uuid.uuid4())
        with self._lock:
            self._tickets.add(ticket)
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    # -- for tests ----------------------------------------------------------------------------
    def wait_for_connection(self, timeout: float = seconds(15.0)) -> Connection:
        def open_connection() -> Connection | None:
            live = [c for c in self.connections if not c.closed.is_set()]
            return live[-1] if live else None

        return self._wait(open_connection, timeout, "a Socket Mode connection")

    def send_envelope(self, kind: str, payload: Message, *, accepts_response_payload: bool = True) -> str:
        """Send an envelope on the newest open connection; returns its envelope_id."""
        envelope_id = str(uuid.uuid4())
        message: Message = {"envelope_id": envelope_id, "type": kind, "payload": payload,
                            "accepts_response_payload": accepts_response_payload}
        if kind == "events_api":
            message["retry_attempt"], message["retry_reason"] = 0, ""
        self.wait_for_connection().send_json(message)
        return envelope_id

    def wait_for_ack(self, envelope_id: str, timeout: float = seconds(10.0)) -> Message:
        return self._wait(lambda: next((m for m in self.received if m.get("envelope_id") == envelope_id), None),
                          timeout, f"the ack of envelope {envelope_id}")

    def acks(self, envelope_id: str) -> list[Message]:
        with self._lock:
            return [m for m in self.received if m.get("envelope_id") == envelope_id]

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=seconds(5))
        self._listener.close()
        for connection in list(self.connections):
            connection.close(1001, "stand-in stopping")

    # -- internals ----------------------------------------------------------------------------
    def _wait(self, find: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = find()
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}")
                self._lock.wait(min(left, 0.1))

    def _received(self, connection: Connection, text: str) -> None:
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            message = {"unparsed": text}
        with self._lock:
            self.received.append(message)
            self._lock.notify_all()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handshake, args=(sock,), daemon=True).start()

    def _handshake(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        try:
            raw = b""
            while b"\r\n\r\n" not in raw:
                chunk = sock.recv(4096)
                if not chunk or len(raw) > 16384:
                    raise EOFError
                raw += chunk
            head, _, rest = raw.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _version = ([*lines[0].split(" "), "", ""])[:3]
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            ticket = (parse_qs(urlparse(path).query).get("ticket") or [""])[0]
            with self._lock:
                known = ticket in self._tickets
                self._tickets.discard(ticket)  # one connection per ticket, as Slack's are
            problem = ("not a GET" if method != "GET" else
                       "not a WebSocket upgrade" if headers.get("upgrade", "").lower() != "websocket"
                       or "upgrade" not in headers.get("connection", "").lower() else
                       "unsupported version" if headers.get("sec-websocket-version") != "13" else
                       "no Sec-WebSocket-Key" if not headers.get("sec-websocket-key") else
                       "unknown or used ticket" if not known else None)
            if problem:
                self.refused.append(problem)
                sock.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                sock.close()
                return
            sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Accept: {accept_key(headers['sec-websocket-key'])}\r\n\r\n").encode())
            sock.settimeout(None)
            connection = Connection(sock, path, self)
            connection._buffer = rest
            with self._lock:
                self.connections.append(connection)
                self._lock.notify_all()
            connection.thread.start()
            connection.send_json({"type": "hello", "num_connections": len(self.connections),
                                  "debug_info": {"host": "applink-stand-in", "build_number": 1,
                                                 "approximate_connection_time": 18060},
                                  "connection_info": {"app_id": self.app_id}})
        except (EOFError, OSError, ValueError):
            sock.close()


@dataclass
class SocketModeSlackStandIn(SlackStandIn):
    """The Web API stand-in plus `apps.connections.open`, handing out URLs of its `socket_mode` server."""

    socket_mode: SocketModeServer = field(default_factory=SocketModeServer)

    def _answer(self, path: str, params: dict[str, Any], auth: str | None) -> tuple[int, dict[str, str], Any]:
        if path.removeprefix("/api/") != "apps.connections.open":
            return super()._answer(path, params, auth)
        if not auth or not auth.startswith("Bearer "):
            body: Message = {"ok": False, "error": "not_authed"}
        elif not auth.startswith("Bearer xapp-"):
            body = {"ok": False, "error": "not_allowed_token_type"}
        else:
            body = {"ok": True, "url": self.socket_mode.issue_url()}
        with self._lock:
            self.calls.append(Call("apps.connections.open", params, 200 if body["ok"] else 0, path, body))
        return 200, {}, body

    def close(self) -> None:
        self.socket_mode.close()
        super().close()
