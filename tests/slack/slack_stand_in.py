"""A local Slack Web API stand-in: a real HTTP server on a free loopback port that records every
call and answers like Slack (after bolt-python's tests/mock_web_api_server).

Web API methods are served under /api/, response_url posts under /respond/. A test can make the
next N calls to a method answer 429 with Retry-After (`fail_next`), drop the connection before or
after Slack accepted the call (`drop_next`), take a call slowly (`delay`: a caller that hangs up
meanwhile never reached Slack) or answer slowly after accepting (`slow_answer`), refuse the token
(`auth_error = "invalid_auth"`), refuse a channel with `not_in_channel`, or misbehave at random
(`chaos`). Posted messages keep their `metadata`, which `conversations.history` (the channel's
top-level messages) and `conversations.replies` (a thread) return with `include_all_metadata`.
Files go through Slack's external upload as files_upload_v2 does it: files.getUploadURLExternal
hands out an upload URL on the stand-in (/upload/{file_id}), the bytes are POSTed there, and
files.completeUploadExternal shares them (with channel_id and thread_ts) — see `uploads`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlparse


@dataclass
class Call:
    method: str  # "chat.postMessage", … or "respond" for a response_url post
    params: dict[str, Any]
    status: int = 200
    path: str = ""
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def ts(self) -> str:
        return str(self.response.get("ts") or self.params.get("ts"))

    @property
    def blocks(self) -> list[dict[str, Any]]:
        blocks = self.params.get("blocks") or []
        return json.loads(blocks) if isinstance(blocks, str) else blocks


DROPPED = -1  # Call.status of a call whose connection was dropped before Slack accepted it


@dataclass
class Chaos:
    """Random misbehaviour for benchmarks: a share of all calls answers 429, a share of accepted
    calls loses its answer (the connection drops after Slack accepted)."""

    rate_limited: float = 0.0
    dropped_after_accept: float = 0.0
    retry_after: int = 1
    seed: int = 7

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)


@dataclass
class Upload:
    """One file of the external-upload flow."""

    file_id: str
    filename: str
    length: int
    content: bytes | None = None  # what was POSTed to the upload URL
    shared: dict[str, Any] | None = None  # the files.completeUploadExternal params that shared it


@dataclass
class SlackStandIn:
    calls: list[Call] = field(default_factory=list)
    refused_channels: set[str] = field(default_factory=set)
    auth_error: str | None = None  # e.g. "invalid_auth": every Web API call is refused with it
    delay: dict[str, float] = field(default_factory=dict)  # method -> seconds before Slack takes the call
    slow_answer: dict[str, float] = field(default_factory=dict)  # method -> seconds from accepting to answering
    chaos: Chaos | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, list[tuple[int, int]]] = {}  # method -> [(status, retry_after)]
        self._drops: dict[str, list[bool]] = {}  # method -> [after_accept]
        self._ts = itertools.count(1)
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> latest payload
        self.uploads: dict[str, Upload] = {}  # file id -> what was announced, sent and shared
        self.views: list[tuple[str, dict[str, Any]]] = []  # (views.open | views.publish, view) accepted
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _client_gone(self) -> bool:
                readable, _, _ = select.select([self.connection], [], [], 0)
                try:
                    return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    return True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if urlparse(self.path).path.startswith("/upload/"):
                    stand_in._receive_upload(self, self.rfile.read(length))
                    return
                raw = self.rfile.read(length).decode()
                if "json" in (self.headers.get("Content-Type") or ""):
                    params = json.loads(raw or "{}")
                else:
                    params = dict(parse_qsl(raw))
                method = urlparse(self.path).path.removeprefix("/api/")
                if stand_in.delay.get(method):
                    time.sleep(stand_in.delay[method])
                    if self._client_gone():  # it never reached Slack: nothing is recorded
                        return
                status, headers, body = stand_in._answer(urlparse(self.path).path, params,
                                                         self.headers.get("Authorization"))
                if stand_in.slow_answer.get(method):  # accepted, then slow to say so
                    time.sleep(stand_in.slow_answer[method])
                if status == DROPPED:  # the connection is lost before any answer
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                data = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not isinstance(body, str) else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    # -- for tests ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    def response_url(self, name: str = "r") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/respond/{name}"

    def fail_next(self, method: str, times: int, retry_after: int = 1, status: int = 429) -> None:
        with self._lock:
            self._failures.setdefault(method, []).extend([(status, retry_after)] * times)

    def drop_next(self, method: str, times: int = 1, *, after_accept: bool) -> None:
        """Drop the connection of the next `times` calls, before or after Slack accepted them."""
        with self._lock:
            self._drops.setdefault(method, []).extend([after_accept] * times)

    def posts(self, channel: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(ts, payload) of every message Slack holds, in posting order."""
        with self._lock:
            return sorted(((ts, p) for (c, ts), p in self.messages.items() if channel in (None, c)),
                          key=lambda item: item[0])

    def calls_to(self, method: str, *, accepted_only: bool = True) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and (c.status == 200 or not accepted_only)]

    def count(self, method: str) -> int:
        return len(self.calls_to(method))

    def web_api_calls(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method != "respond"]

    def shared_files(self) -> list[Upload]:
        with self._lock:
            return [u for u in self.uploads.values() if u.shared is not None]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- answers ------------------------------------------------------------------------------
    def _answer(self, path: str, params: dict[str, Any], auth: str | None) -> tuple[int, dict[str, str], Any]:
        if path.startswith("/respond/"):
            with self._lock:
                self.calls.append(Call("respond", params, 200, path))
            return 200, {}, "ok"
        method = path.removeprefix("/api/")
        with self._lock:
            queue = self._failures.get(method)
            chaos = self.chaos
            if queue or (chaos and chaos.random.random() < chaos.rate_limited):
                status, retry_after = queue.pop(0) if queue else (429, chaos.retry_after if chaos else 1)
                self.calls.append(Call(method, params, status, path))
                return status, {"Retry-After": str(retry_after)}, {"ok": False, "error": "ratelimited"}
            drops = self._drops.get(method)
            after_accept = drops.pop(0) if drops else None
            if after_accept is None and chaos and method in ("chat.postMessage", "chat.update") and \
                    chaos.random.random() < chaos.dropped_after_accept:
                after_accept = True
            if after_accept is False:
                self.calls.append(Call(method, params, DROPPED, path))
                return DROPPED, {}, {}
            call = Call(method, params, 200, path)
            self.calls.append(call)
            if not auth or not auth.startswith("Bearer xoxb-"):
                call.response = {"ok": False, "error": "not_authed"}
            elif self.auth_error:
                call.response = {"ok": False, "error": self.auth_error}
            else:
                call.response = self._reply(method, params)
            if not call.response["ok"]:
                call.status = 0  # answered, but refused: not "accepted"
            if after_accept:
                return DROPPED, {}, {}  # accepted (the message exists), but the answer is lost
            return 200, {}, call.response

    def _reply(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel", ""))
        if method == "auth.test":
            return {"ok": True, "url": "https://lab.slack.com/", "team": "Lab", "user": "cyto", "team_id": "T0LAB",
                    "user_id": "UCYTOBOT", "bot_id": "BCYTO"}
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral") and channel in self.refused_channels:
            return {"ok": False, "error": "not_in_channel"}
        if method == "chat.postMessage":
            ts = f"{int(time.time())}.{next(self._ts):06d}"
            self.messages[(channel, ts)] = params
            return {"ok": True, "channel": channel, "ts": ts, "message": {"text": params.get("text"), "ts": ts}}
        if method in ("conversations.history", "conversations.replies"):
            return self._conversation(method, channel, params)
        if method == "chat.update":
            key = (channel, str(params.get("ts")))
            if key not in self.messages:
                return {"ok": False, "error": "message_not_found"}
            self.messages[key] = {**self.messages[key], **params}  # an edit keeps the thread and metadata
            return {"ok": True, "channel": channel, "ts": key[1], "text": params.get("text")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1700000000.{next(self._ts):06d}"}
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._ts):08d}"
            self.uploads[file_id] = Upload(file_id, str(params.get("filename")), int(params.get("length") or 0))
            port = self.server.server_address[1]
            return {"ok": True, "upload_url": f"http://127.0.0.1:{port}/upload/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            return self._complete_upload(params)
        if method in ("views.open", "views.publish"):
            return self._view(method, params)
        if method == "conversations.info":
            return {"ok": True, "channel": {"id": channel, "is_member": True}}
        return {"ok": True}

    # -- the external upload ------------------------------------------------------------------
    def _receive_upload(self, handler: BaseHTTPRequestHandler, data: bytes) -> None:
        file_id = urlparse(handler.path).path.removeprefix("/upload/")
        with self._lock:
            upload = self.uploads.get(file_id)
            self.calls.append(Call("upload", {"file_id": file_id, "bytes": len(data)}, 200 if upload else 404,
                                   handler.path))
            if upload is not None:
                upload.content = data
        status, body = (200, f"OK - {len(data)}") if upload is not None else (404, "unknown upload")
        handler.send_response(status)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body.encode())

    def _complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel_id") or "")
        if channel in self.refused_channels:
            return {"ok": False, "error": "not_in_channel"}
        files = json.loads(params.get("files") or "[]")
        done = []
        for entry in files:
            upload = self.uploads.get(str(entry.get("id")))
            if upload is None or upload.content is None or len(upload.content) != upload.length:
                return {"ok": False, "error": "file_upload_size_mismatch" if upload else "file_not_found"}
            upload.shared = dict(params)
            done.append({"id": upload.file_id, "title": entry.get("title"), "name": upload.filename})
        return {"ok": True, "files": done}

    def _view(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """views.open needs a trigger id, views.publish a user id; both a view that Block Kit accepts."""
        from slack_sdk.errors import SlackObjectFormationError
        from slack_sdk.models.views import View

        raw = params.get("view")
        view = json.loads(raw) if isinstance(raw, str) else raw
        if method == "views.open" and not params.get("trigger_id"):
            return {"ok": False, "error": "invalid_arguments"}
        if method == "views.publish" and (not params.get("user_id") or (view or {}).get("type") != "home"):
            return {"ok": False, "error": "invalid_arguments"}
        try:
            parsed = View(**view)
            parsed.validate_json()
        except (TypeError, SlackObjectFormationError) as exc:
            return {"ok": False, "error": "invalid_arguments", "detail": str(exc)}
        if len(view.get("blocks", [])) > 100:
            return {"ok": False, "error": "invalid_arguments"}
        self.views.append((method, view))
        return {"ok": True, "view": {"id": f"V{len(self.views):04d}", **view}}

    def _conversation(self, method: str, channel: str, params: dict[str, Any]) -> dict[str, Any]:
        """A channel's top-level messages (history, newest first) or one thread (replies, oldest
        first), after `oldest`, in pages of `limit` with a cursor; metadata with include_all_metadata."""
        oldest = float(params.get("oldest") or 0)
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        found = []
        for (c, ts), payload in self.messages.items():
            thread = payload.get("thread_ts")
            if c != channel or float(ts) < oldest:
                continue
            if method == "conversations.history" and thread not in (None, ts):
                continue
            if method == "conversations.replies" and ts != params.get("ts") and thread != params.get("ts"):
                continue
            message = {"type": "message", "ts": ts, "text": payload.get("text")}
            if thread:
                message["thread_ts"] = thread
            metadata = payload.get("metadata")
            if with_metadata and metadata:
                message["metadata"] = json.loads(metadata) if isinstance(metadata, str) else metadata
            found.append(message)
        found.sort(key=lambda m: float(m["ts"]), reverse=method == "conversations.history")
        start = int(params.get("cursor") or 0)
        limit = int(params.get("limit") or 100)
        page = found[start:start + limit]
        more = start + limit < len(found)
        return {"ok": True, "messages": page, "has_more": more,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""}}
