"""The outbox's claims, in process on a real ledger (an SQLite file, and PostgreSQL): one sender per
intent, a dead sender's claim taken over as uncertain, edits coalesced, the done alert after the
failure replies."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from bot.claims import new_token
from bot.component_tables import ComponentTables
from bot.ledger import Run, RunDB
from bot.states import RunState
from handlers.outbox import Kind, Outbox
from handlers.slack_schema import SLACK_SCHEMA

NOW = 1_800_000_000.0


@pytest.fixture
def db(ledger_url: str) -> RunDB:
    db = RunDB(ledger_url, components=[SLACK_SCHEMA])
    run = Run(id="r1", date="2018-12-05", batch="b", pipeline="wordcount", params={}, resources={}, executor="local",
              store="/s", requested_by="U1", state=RunState.ACTIVE, created_at=NOW, finished_at=None,
              cancel_requested_by=None, slack_channel="C1", slack_thread_ts="1.1", version=0)
    db.create_run(run, ["A01"], 1, ["job-A01"], NOW)
    return db


def outbox_of(db: RunDB) -> Outbox:
    return Outbox(ComponentTables(db, SLACK_SCHEMA))


def add(db: RunDB, key: str, kind: Kind, at: float = NOW) -> None:
    with db.transaction() as conn:
        outbox_of(db).add(conn, key, "r1", kind, "C1", at, thread_ts="1.1")


def test_two_senders_never_claim_the_same_intent(db: RunDB) -> None:
    add(db, "failures:r1:A01:1", Kind.FAILURES)
    first, second = outbox_of(RunDB(db.url)), outbox_of(RunDB(db.url))
    claimed = first.claim("host:1:a", NOW, kinds=list(Kind))
    assert claimed is not None and not claimed.uncertain
    assert second.claim("host:2:b", NOW, kinds=list(Kind)) is None, "held by a live claimer"
    assert first.sent(claimed.key, "host:1:a", "9.9", NOW)
    assert second.claim("host:2:b", NOW, kinds=list(Kind)) is None, "delivered"
    assert not second.sent(claimed.key, "host:2:b", "9.8", NOW), "only the claimer records the outcome"


def test_claims_of_dead_processes_are_taken_over_as_uncertain(db: RunDB) -> None:
    add(db, "root:r1", Kind.ROOT)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    outbox = outbox_of(db)
    assert outbox.claim(f"{socket.gethostname()}:{dead.stdout.strip()}:x", NOW, kinds=[Kind.ROOT]) is not None
    alive = f"{socket.gethostname()}:{os.getpid()}:y"
    taken = outbox.claim(new_token(), NOW, kinds=[Kind.ROOT])
    assert taken is not None and taken.uncertain, "the post may have reached Slack: look before posting"
    assert outbox.claim(alive, NOW, kinds=[Kind.ROOT]) is None, "a live claim is not taken over"


def test_a_postponed_intent_waits_and_counts_its_tries(db: RunDB) -> None:
    add(db, "root:r1", Kind.ROOT)
    outbox = outbox_of(db)
    token = new_token()
    intent = outbox.claim(token, NOW, kinds=[Kind.ROOT])
    outbox.later(intent.key, token, NOW + 3600, "rate limited", counts=False)
    assert outbox.claim(token, NOW + 3599, kinds=[Kind.ROOT]) is None
    again = outbox.claim(token, NOW + 3600, kinds=[Kind.ROOT])
    assert again is not None and again.tries == 0 and not again.uncertain
    outbox.later(again.key, token, NOW + 3601, "connection reset", uncertain=True)
    third = outbox.claim(token, NOW + 3601, kinds=[Kind.ROOT])
    assert third.tries == 1 and third.uncertain


def test_root_edits_coalesce_and_a_newer_version_during_sending_is_sent_again(db: RunDB) -> None:
    outbox = outbox_of(db)
    for version in (1, 2, 3):
        outbox.want_edit("edit:root:r1", "r1", Kind.EDIT_ROOT, "C1", "1.1", version, NOW)
    assert outbox.backlog() == {"edit_root": 1}
    token = new_token()
    edit = outbox.claim(token, NOW, kinds=[Kind.EDIT_ROOT])
    outbox.want_edit("edit:root:r1", "r1", Kind.EDIT_ROOT, "C1", "1.1", 4, NOW)  # the run moved on meanwhile
    outbox.sent(edit.key, token, "1.1", NOW, shown_version=3)
    assert outbox.backlog() == {"edit_root": 1}, "version 4 still to show"
    edit = outbox.claim(token, NOW, kinds=[Kind.EDIT_ROOT])
    outbox.sent(edit.key, token, "1.1", NOW, shown_version=4)
    assert outbox.backlog() == {}
    outbox.want_edit("edit:root:r1", "r1", Kind.EDIT_ROOT, "C1", "1.1", 4, NOW)
    assert outbox.backlog() == {}, "nothing new to show"


def test_the_done_alert_waits_for_the_runs_failure_replies(db: RunDB) -> None:
    add(db, "failures:r1:A01:1", Kind.FAILURES, NOW + 1)
    add(db, "done:r1:1", Kind.DONE, NOW)  # planned first
    outbox = outbox_of(db)
    token = new_token()
    first = outbox.claim(token, NOW + 2, kinds=list(Kind))
    assert first.kind == Kind.FAILURES
    outbox.later(first.key, token, NOW + 10, "rate limited", counts=False)
    assert outbox.claim(token, NOW + 2, kinds=list(Kind)) is None, "not before the failure reply"
    again = outbox.claim(token, NOW + 10, kinds=list(Kind))
    outbox.sent(again.key, token, "2.2", NOW + 10)
    assert outbox.claim(token, NOW + 10, kinds=list(Kind)).kind == Kind.DONE
