"""Fixtures for the Slack bot's end-to-end tests: the Slack stand-in, a local store, settings for
the real local executor, and the bot serving HTTP on a free loopback port."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from slack_harness import ROOT, SECRET, TOKEN, Served, assert_valid_payloads
from slack_stand_in import SlackStandIn

from bot.executors import Executor
from bot.settings import Settings
from handlers.app import build_app
from handlers.cyto_bot import CytoBot
from handlers.serve import http_server
from tests.slack.server_thread import ServerThread


@pytest.fixture
def stand_in() -> Iterator[SlackStandIn]:
    server = SlackStandIn()
    yield server
    server.close()
    assert_valid_payloads(server)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    return path


@pytest.fixture
def settings(tmp_path: Path, store: Path, stand_in: SlackStandIn, monkeypatch: pytest.MonkeyPatch) -> Settings:
    # Local jobs run `python -m container.entrypoint`; make the tree importable wherever pytest runs.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.chdir(ROOT)
    return Settings(store=str(store), db=str(tmp_path / "runs.sqlite"), local_spool=str(tmp_path / "spool"),
                    local_max_parallel=4, default_pipeline="wordcount", slack_bot_token=TOKEN,
                    slack_signing_secret=SECRET, slack_api_url=stand_in.url, poll_seconds=0.2)


@pytest.fixture
def start_bot(stand_in: SlackStandIn) -> Iterator[Callable[..., Served]]:
    """Start (or restart) the bot on the given settings, serving HTTP on a free loopback port."""
    started: list[Served] = []

    def start(settings: Settings, executor: Executor | None = None, clock: Callable[[], float] = time.time,
              **overrides: Any) -> Served:
        bot = CytoBot.from_settings(replace(settings, **overrides), executor=executor, clock=clock)
        app = build_app(bot, signing_secret=settings.slack_signing_secret)
        server = http_server(app, bot, "127.0.0.1", 0)
        served = Served(bot, server, stand_in, ServerThread(server))
        started.append(served)
        return served

    yield start
    for served in started:
        served.close()


@pytest.fixture
def served(start_bot: Callable[..., Served], settings: Settings) -> Served:
    return start_bot(settings)
