"""moto's server on a free loopback port, behind a small WSGI middleware that counts the API calls
it receives and can answer some of them with a throttling error, as AWS does under load.

Counting happens at the server, so tests assert on what really reached "AWS", whatever boto3 did.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from tests.timeouts import seconds

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def action_of(environ: dict[str, Any]) -> str:
    """`batch:SubmitJob`, `logs:GetLogEvents`, `s3:ListObjectsV2`... for one request."""
    path = environ.get("PATH_INFO", "")
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:  # JSON protocol (CloudWatch Logs)
        return "logs:" + target.rsplit(".", 1)[-1]
    if path.startswith("/v1/"):  # Batch's REST protocol: /v1/submitjob
        return "batch:" + path[4:].lower()
    if path.startswith("/moto-api"):
        return "moto-api"
    query = environ.get("QUERY_STRING", "")
    if "list-type=2" in query:
        return "s3:ListObjectsV2"
    return f"s3:{environ.get('REQUEST_METHOD', '?')}"


class Middleware:
    """Counts requests per action; answers `throttle[action]` of them with 429, one in every
    `every[action]` requests (every other one by default), as a rate limit under a burst does."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.calls: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self.throttle: dict[str, int] = {}
        self.every: dict[str, int] = {}
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.throttled.clear()
            self.throttle.clear()
            self.every.clear()
            self._seen.clear()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        action = action_of(environ)
        with self._lock:
            self._seen[action] += 1
            if self.throttle.get(action, 0) > 0 and self._seen[action] % self.every.get(action, 2) == 0:
                self.throttle[action] -= 1
                self.throttled[action] += 1
                reject = True
            else:
                self.calls[action] += 1
                reject = False
        if reject:
            body = json.dumps({"__type": "TooManyRequestsException", "message": "Too Many Requests"}).encode()
            start_response("429 Too Many Requests", [("Content-Type", "application/json"),
                                                    ("x-amzn-ErrorType", "TooManyRequestsException"),
                                                    ("Content-Length", str(len(body)))])
            return [body]
        return self.app(environ, start_response)


class CountingMotoServer(ThreadedMotoServer):
    """ThreadedMotoServer whose app is wrapped in `Middleware`; port 0 picks a free port."""

    def __init__(self) -> None:
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)
        self.middleware = Middleware(DomainDispatcherApplication(create_backend_app))

    def _server_entry(self) -> None:
        self._server = make_server(self._ip_address, self._port, self.middleware, True,
                                   request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()

    @property
    def endpoint(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"

    def moto_api(self, path: str, body: Any = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
        request = urllib.request.Request(f"{self.endpoint}/moto-api/{path}", data=data, method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=seconds(10)).read()
