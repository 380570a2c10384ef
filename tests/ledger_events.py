"""Replaying a run's durable events: they must tell every state change the ledger made, in order."""

from __future__ import annotations

from bot.ledger import RunDB, RunEvent
from bot.states import JOB_TRANSITIONS, RUN_TRANSITIONS, EventKind, JobState, RunState, can_move

RUN_KINDS = {EventKind.RUN_STARTED, EventKind.RUN_RELEASED, EventKind.RUN_REOPENED, EventKind.RUN_CANCELLING,
             EventKind.RUN_FINISHED}


def replay(db: RunDB, run_id: str) -> list[RunEvent]:
    """Check that the run's events, applied in order from its start, are legal moves of the transition
    tables and end where the ledger's rows are; return them."""
    events = db.events(run_id=run_id, limit=100_000)
    assert [e.seq for e in events] == sorted({e.seq for e in events}), "seq strictly increasing"
    assert events and events[0].kind == EventKind.RUN_STARTED, events[:1]
    run_state = RunState(events[0].state)
    jobs = {job.analysis: (JobState.PENDING, 1) for job in db.jobs(run_id)}
    for e in events[1:]:
        if e.kind in RUN_KINDS:
            new_run = RunState(e.state)
            assert can_move(RUN_TRANSITIONS, run_state, new_run), (run_state, e)
            run_state = new_run
            continue
        assert e.analysis in jobs, e
        old, attempt = jobs[e.analysis]
        new, new_attempt = JobState(e.state), e.attempt
        assert new_attempt is not None
        if e.kind == EventKind.JOB_RETRYING:
            assert new_attempt == attempt, e
            new_attempt = attempt + 1
        elif e.kind == EventKind.JOB_RETRIED:
            assert new_attempt == attempt + 1, e
        else:
            assert new_attempt == attempt, (jobs[e.analysis], e)
        if e.kind != EventKind.JOB_REPAIRED:
            assert can_move(JOB_TRANSITIONS, old, new), (old, e)
        jobs[e.analysis] = (new, new_attempt)
    assert run_state == db.run(run_id).state, (run_state, events)
    assert jobs == {job.analysis: (job.state, job.attempt) for job in db.jobs(run_id)}, events
    return events


def told(events: list[RunEvent]) -> list[tuple[str, str | None, str | None, int | None]]:
    """(kind, analysis, state, attempt) of each event, for comparing with what a test expects."""
    return [(e.kind.value, e.analysis, e.state, e.attempt) for e in events]
