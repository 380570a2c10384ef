"""Fixtures for the deploy tests: moto in-process (Batch in its Docker-less simple mode), the stack
created from deploy/cyto-bot.yaml, and a tiny Slack Web API stand-in on a loopback port."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import boto3
import pytest
from moto import mock_aws

from tests.aws.conftest import aws_env
from tests.deploy.cfn_moto import REGION, create_stack

GOOD_TOKEN = "xoxb-good-token"
NARROW_TOKEN = "xoxb-narrow-token"  # valid, but without the commands scope


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """moto in-process, fake credentials only, Batch jobs 'succeed' without Docker."""
    aws_env(monkeypatch, None, tmp_path, REGION)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    with mock_aws(config={"batch": {"use_docker": False}}):
        yield


@pytest.fixture
def stack(aws: None) -> dict[str, str]:
    """The stack's outputs (Bucket, JobQueue, JobDefinition, LogGroup, ImageRepository, ...)."""
    return create_stack()


@dataclass
class SlackStandIn:
    url: str
    calls: list[str] = field(default_factory=list)


class _SlackHandler(BaseHTTPRequestHandler):
    calls: list[str]

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        method = self.path.rstrip("/").rsplit("/", 1)[-1]
        self.calls.append(method)
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        token = token or (parse_qs(body).get("token") or [""])[0]
        scopes = {GOOD_TOKEN: "commands,chat:write,channels:read,channels:history,groups:history,files:write",
                  NARROW_TOKEN: "chat:write"}
        if method != "auth.test":
            payload, headers = {"ok": False, "error": "unknown_method"}, {}
        elif token not in scopes:
            payload, headers = {"ok": False, "error": "invalid_auth"}, {}
        else:
            payload = {"ok": True, "url": "https://lab.slack.com/", "team": "Lab", "user": "cyto",
                       "team_id": "T0001", "user_id": "U0001", "bot_id": "B0001"}
            headers = {"x-oauth-scopes": scopes[token]}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    calls: list[str] = []
    handler = type("Handler", (_SlackHandler,), {"calls": calls})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SlackStandIn(f"http://127.0.0.1:{server.server_address[1]}/api/", calls)
    server.shutdown()
    server.server_close()
