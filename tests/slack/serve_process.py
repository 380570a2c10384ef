"""`cyto serve --http` as a real process on the Slack stand-in, for end-to-end tests: its log
goes to a file, the run ledger is read from the test process, requests are signed like Slack's."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_harness import ROOT, SECRET, TOKEN, USER, command_body, signed_headers, wait_for
from slack_stand_in import SlackStandIn

from bot.ledger import RunDB
from tests.timeouts import seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_env(tmp_path: Path, stand_in: SlackStandIn, store: Path, poll_seconds: float, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "CYTO_STORE": str(store), "CYTO_DB": str(tmp_path / "db.sqlite"),
            "CYTO_LOCAL_SPOOL": str(tmp_path / "spool"), "CYTO_POLL_SECONDS": str(poll_seconds),
            "CYTO_DEFAULT_PIPELINE": "wordcount", "SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": stand_in.url, **extra}


@dataclass
class ServeProcess:
    proc: subprocess.Popen[str]
    port: int
    log_path: Path
    stand_in: SlackStandIn
    db_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> RunDB:
        return RunDB(str(self.db_path))

    def health(self) -> tuple[int, dict[str, Any]] | None:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=seconds(5)) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            return None

    def post(self, body: str | bytes, headers: dict[str, str]) -> tuple[int, str]:
        data = body.encode() if isinstance(body, str) else body
        request = urllib.request.Request(self.url + "/slack/events", data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=seconds(10)) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def command(self, text: str, *, trigger_id: str | None = None, user: str = USER,
                extra_headers: dict[str, str] | None = None) -> tuple[int, str]:
        body = command_body(self.stand_in, text, user=user, trigger_id=trigger_id)
        return self.post(body, {**signed_headers(body), **(extra_headers or {})})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=seconds(15))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def start_serve(tmp_path: Path, stand_in: SlackStandIn, store: Path, *, poll_seconds: float = 0.5,
                name: str = "serve", wait: bool = True, **extra: str) -> ServeProcess:
    port = free_port()
    log_path = tmp_path / f"{name}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--http", "--host", "127.0.0.1",
                                 "--port", str(port)], cwd=ROOT, env=serve_env(tmp_path, stand_in, store,
                                                                               poll_seconds, **extra),
                                stdout=log, stderr=subprocess.STDOUT, text=True)
    served = ServeProcess(proc, port, log_path, stand_in, tmp_path / "db.sqlite")
    if wait:
        wait_for(lambda: served.health() is not None or proc.poll() is not None, timeout=seconds(60), what="cyto serve")
        assert proc.poll() is None, served.log()
    return served
