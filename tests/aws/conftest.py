"""Fixtures for tests against moto: one moto server per session on a free loopback port, reset
before each test; AWS settings pointing at it; Batch in moto's Docker-less simple mode or with the
entrypoint shim (batch_shim.py). Test modules outside this folder load them with
`pytest_plugins = ["tests.aws.conftest"]`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from tests.aws.batch_setup import BatchSetup, make_batch
from tests.aws.batch_shim import EntrypointShim, job_env
from tests.aws.server import CountingMotoServer, Middleware
from tests.timeouts import deadline_after

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[CountingMotoServer]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request drowns the output
    server = CountingMotoServer()
    server.start()
    # Test helpers use boto3's default session; made fresh here, it sees only the fake keys the
    # tests set. Our own code makes a new session per client, so credential tests still bite.
    boto3.DEFAULT_SESSION = None
    yield server
    server.stop()


@dataclass
class Aws:
    server: CountingMotoServer
    endpoint: str

    @property
    def middleware(self) -> Middleware:
        return self.server.middleware

    def calls(self, action: str) -> int:
        return self.middleware.calls[action]

    def throttle(self, action: str, times: int, every: int = 2) -> None:
        self.middleware.every[action] = every
        self.middleware.throttle[action] = times


def aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: str | None, tmp_path: Path, region: str = REGION) -> None:
    """Only moto, only fake credentials: no profile, config file or instance metadata is consulted.
    `endpoint` is the moto server's URL, or None for moto's in-process mock."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "MOTO_SIMPLE_BATCH_FAIL_AFTER",
                 "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    if endpoint is not None:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    monkeypatch.setenv("AWS_REGION", region)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def aws(moto_server: CountingMotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Aws]:
    moto_server.moto_api("reset")
    moto_server.moto_api("config", {"batch": {"use_docker": True}})
    moto_server.middleware.reset()
    aws_env(monkeypatch, moto_server.endpoint, tmp_path)
    yield Aws(moto_server, moto_server.endpoint)
    moto_server.middleware.reset()


@pytest.fixture
def simple_batch(aws: Aws) -> Iterator[Aws]:
    """moto's Docker-less Batch: jobs succeed at submission (or fail with MOTO_SIMPLE_BATCH_FAIL_AFTER)."""
    aws.server.moto_api("config", {"batch": {"use_docker": False}})
    yield aws
    aws.server.moto_api("config", {"batch": {"use_docker": True}})


@pytest.fixture
def shim(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[EntrypointShim]:
    """moto's Batch running each job's command as a local process (see batch_shim.py)."""
    entry = EntrypointShim(job_env(aws.endpoint))
    entry.install(monkeypatch)
    yield entry
    entry.hold.clear()
    deadline = deadline_after(30)
    for thread in threading.enumerate():  # let job processes finish before moto is reset
        if thread.name.startswith("MOTO-BATCH-"):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
    entry.uninstall()


@pytest.fixture
def batch_setup(aws: Aws) -> BatchSetup:
    return make_batch()
