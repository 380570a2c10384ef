"""The Python API: one session over the engine, for scripts and notebooks (the CLI and the bot use
the same calls).

    from bot.api import Cyto
    cyto = Cyto.from_env()                 # defaults: ~/cyto-data, local processes, SQLite (bot/paths.py)
    cyto.batches("2018-12-05")
    run = cyto.run("2018-12-05", "batch-7", pipeline="wordcount", memory_mib=4096)
    cyto.wait(run.id).counts
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot import catalog, demo, dry_run, fasta_batch
from bot.actions import FailedAttempt, RetryAdvice, RunActions, run_actions
from bot.component_tables import ComponentTables
from bot.dry_run import DryRun
from bot.engine import (
    AlreadyRetried,
    BadParameters,
    BatchInUse,
    Engine,
    EngineError,
    LogExcerpt,
    NotFound,
    Plan,
    RunSummary,
    run_layout,
    validate_resources,
    with_overrides,
)
from bot.executors import Executor, Resources
from bot.fasta import FastaError
from bot.fasta_batch import FastaMerge, FastaSplit
from bot.layout import BatchRef
from bot.ledger import Attempt, Component, Conn, DatabaseError, Job, Record, Run, RunDB, RunEvent
from bot.ledger.copy import copy_ledger
from bot.outputs import OutputFile, list_outputs
from bot.outputs import download as download_outputs
from bot.report import ReportResult, build_report
from bot.report.links import ReportLink, report_link
from bot.settings import Settings
from bot.states import JobState, RunState
from bot.store import Store, open_store
from container.pipelines import available as available_pipelines


def build_executor(settings: Settings) -> Executor:
    if settings.executor == "batch":
        from bot.executors.batch import BatchExecutor

        return BatchExecutor.from_settings(settings)
    from bot.executors.local import DEFAULT_COMMAND, LocalExecutor

    return LocalExecutor(settings.local_spool, settings.local_max_parallel,
                         settings.local_command or DEFAULT_COMMAND, keep_days=settings.local_keep_days)


EVENT_PAGE = 500  # events read at a time while following a run


@dataclass(frozen=True)
class PendingIntents:
    stops_to_send: int
    unresolved_claims: int

    def __bool__(self) -> bool:
        return bool(self.stops_to_send or self.unresolved_claims)


class Cyto:
    def __init__(self, settings: Settings | None = None, *, store: Store | None = None,
                 executor: Executor | None = None, db: RunDB | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.store = store or open_store(self.settings.store)
        self.executor = executor or build_executor(self.settings)
        self.db = db or RunDB(self.settings.db)
        self.engine = Engine(self.store, self.executor, self.db, max_memory_mib=self.settings.max_memory_mib)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Cyto:
        return cls(Settings.from_env(env))

    # -- what is in the store -----------------------------------------------------------------
    def dates(self) -> list[str]:
        return catalog.list_dates(self.store)

    def batches(self, date: str) -> list[str]:
        return catalog.list_batches(self.store, date)

    def plan(self, date: str, batch: str, *, pipeline: str | None = None, vcpus: float | None = None,
             memory_mib: int | None = None, storage_gib: int | None = None, timeout_s: int | None = None,
             retries: int | None = None, params: Mapping[str, Any] | None = None) -> Plan:
        """Check a run request and list the analyses it would submit, without submitting."""
        resources = with_overrides(self.engine.default_resources(), vcpus=vcpus, memory_mib=memory_mib,
                                   storage_gib=storage_gib, timeout_s=timeout_s, retries=retries)
        return self.engine.plan(date, batch, pipeline or self.settings.default_pipeline, resources, params)

    # -- runs ---------------------------------------------------------------------------------
    def run(self, date: str, batch: str, *, requested_by: str = "notebook", allow_concurrent: bool = False,
            **options: Any) -> Run:
        """Start a run. Refused (BatchInUse) while another run of the batch is unfinished, unless
        `allow_concurrent`: then this run writes to its own Output/{date}/{batch}.run-{run}/ folder."""
        return self.engine.start_run(self.plan(date, batch, **options), requested_by,
                                     allow_concurrent=allow_concurrent)

    def runs(self, limit: int = 20) -> list[Run]:
        return self.db.runs(limit)

    def poll(self) -> None:
        self.engine.poll()

    def status(self, run_id: str) -> RunSummary:
        return self.engine.summary(run_id)

    def jobs(self, run_id: str) -> list[Job]:
        """The run's analyses with their current state, attempt and reason, by analysis name."""
        return self.db.jobs(self.engine.get_run(run_id).id)

    def wait(self, run_id: str, interval: float | None = None, timeout: float | None = None) -> RunSummary:
        """Poll until the run has finished (or `timeout` seconds passed); `follow` without a callback."""
        return self.follow(run_id, lambda _: None, interval=interval, timeout=timeout)

    # -- following a run (front ends: CLI --wait, notebook watcher) ------------------------------
    def follow(self, run_id: str, on_event: Callable[[RunEvent], None], *, interval: float | None = None,
               clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
               poll: bool = True, timeout: float | None = None,
               on_summary: Callable[[RunSummary], None] | None = None) -> RunSummary:
        """Follow a run until it has finished: `on_event` gets each of the run's events from the ledger,
        from its first, in order and once, whichever process recorded it; `on_summary` gets the run's
        summary after each read. Between reads it polls the executor (unless `poll=False`: something
        else polls, such as the bot's scheduler) and sleeps `interval` seconds. Returns the final
        summary, or after `timeout` seconds the summary as it stands (`finished` says which)."""
        self.engine.get_run(run_id)  # NotFound before anything else
        pause = interval or min(self.settings.poll_seconds, 1.0)
        deadline = None if timeout is None else clock() + timeout
        cursor = 0
        while True:
            if poll:
                self.poll()
            # The summary is read before the events: once it says finished, every event is committed.
            summary = self.status(run_id)
            cursor = self._deliver_events(run_id, cursor, on_event)
            if on_summary is not None:
                on_summary(summary)
            if summary.finished or (deadline is not None and clock() >= deadline):
                return summary
            sleep(pause)

    def _deliver_events(self, run_id: str, cursor: int, on_event: Callable[[RunEvent], None]) -> int:
        while True:
            page = self.db.events(cursor, run_id=run_id, limit=EVENT_PAGE)
            for event in page:
                on_event(event)
                cursor = event.seq
            if len(page) < EVENT_PAGE:
                return cursor

    def logs(self, run_id: str, analysis: str, attempt: int | None = None, tail: int = 15) -> LogExcerpt:
        return self.engine.log_excerpt(run_id, analysis, attempt, tail=tail)

    def retry(self, run_id: str, analysis: str | None = None, *, by: str = "notebook",
              memory_mib: int | None = None, vcpus: float | None = None, timeout_s: int | None = None,
              expected_attempt: int | None = None, submit: bool = True) -> list[str]:
        """Retry one failed analysis (or every failed one). `expected_attempt`: the attempt the person saw
        fail; AlreadyRetried when the analysis has moved on since (a double click, two people at once).
        `submit=False`: only record the retry; a poll (or `submit_pending`) submits it."""
        return self.engine.retry(run_id, analysis, by=by, memory_mib=memory_mib, vcpus=vcpus, timeout_s=timeout_s,
                                 expected_attempt=expected_attempt, submit=submit)

    def cancel(self, run_id: str, *, by: str = "notebook") -> bool:
        return self.engine.cancel(run_id, by=by)

    # -- results ------------------------------------------------------------------------------
    def report(self, run_id: str, out_dir: str | Path | None = None) -> ReportResult:
        """Build the run's report (and its pipeline's batch tables) into
        Output/{date}/{batch}/_runs/{run}/, and into `out_dir` too when given."""
        return build_report(self.engine, run_id, out_dir=out_dir)

    # -- the CLI, the notebook and the benches (cli-door) --------------------------------------
    @property
    def store_uri(self) -> str:
        """Where the store is (a folder's file:// URI, or s3://bucket/prefix)."""
        return self.store.uri

    def check_store(self) -> None:
        """StoreError when the store cannot be read (a missing folder, a bucket out of reach)."""
        self.store.check()

    def analyses(self, date: str, batch: str) -> list[str]:
        """The analyses of Input/{date}/{batch}/ (none when there is no such batch)."""
        return list(catalog.iter_analyses(self.store, BatchRef(date, batch)))

    def pipelines(self) -> list[str]:
        return available_pipelines()

    def default_resources(self) -> Resources:
        """What a run gets when its request names no resources."""
        return self.engine.default_resources()

    def resource_errors(self, **values: Any) -> dict[str, str]:
        """Each resource (vcpus, memory_mib, storage_gib, timeout_s, retries) checked alone against the
        engine's limits: why each refused one is refused, by name."""
        errors = {}
        for name, value in values.items():
            try:
                validate_resources(with_overrides(self.engine.default_resources(), **{name: value}))
            except EngineError as exc:
                errors[name] = str(exc)
        return errors

    def dry_run(self, plan: Plan) -> DryRun:
        """What the plan would submit: each analysis with its parameters (params.json merged over the
        run's) and the job-hours this pipeline's recent runs suggest."""
        history = [self.status(r.id) for r in self.runs(dry_run.HISTORY_RUNS) if r.pipeline == plan.pipeline]
        return DryRun(plan, dry_run.analyses_with_params(self.store, plan), dry_run.estimate(plan, history))

    def write_demo_batch(self, pipeline: str) -> tuple[BatchRef, list[str]]:
        """Write `cyto demo`'s sample batch for `pipeline` (cytometry or wordcount) into the store."""
        if pipeline == "cytometry":
            return demo.write_cytometry_batch(self.store)
        return demo.write_demo_batch(self.store)

    def pending_intents(self, run_id: str) -> PendingIntents:
        """What the ledger recorded for the run but has not carried out yet: stops not yet sent to the
        executor, and submission claims on cancelled attempts not yet resolved (the next poll does both)."""
        return PendingIntents(len(self.db.cancels_to_send([run_id])), len(self.db.unresolved_claims(run_id)))

    def outputs(self, run_id: str, analysis: str | None = None) -> list[OutputFile]:
        """What the run's analyses (or one of them) wrote under their Output folders."""
        run = self.engine.get_run(run_id)
        names = [j.analysis for j in self.db.jobs(run.id)]
        if analysis is not None:
            if analysis not in names:
                raise NotFound(f"run {run_id} has no analysis {analysis!r} (it has {', '.join(names[:5])}"
                               f"{' …' if len(names) > 5 else ''})")
            names = [analysis]
        return list_outputs(self.store, run_layout(run), names)

    def read_output(self, run_id: str, key: str) -> bytes:
        """One file of the run's Output folder (an `OutputFile.key`, a report's plot)."""
        prefix = run_layout(self.engine.get_run(run_id)).output_prefix
        if not key.startswith(prefix) or "/../" in f"/{key}/":
            raise NotFound(f"{key} is not in run {run_id}'s outputs ({prefix})")
        return self.store.read_bytes(key)

    def download(self, files: Sequence[OutputFile], dest: str | Path,
                 progress: Callable[[int], None] | None = None) -> list[Path]:
        """Fetch output files into dest/ANALYSIS/...; `progress` is called with each chunk's byte count."""
        return download_outputs(self.store, files, Path(dest), progress)

    def report_link(self, key: str) -> ReportLink:
        """How a person opens a report: a pre-signed URL on S3, a path on a local store."""
        return report_link(self.store, key)

    def split_fasta(self, fasta_path: str | Path, chunks: int, date: str, batch: str) -> FastaSplit:
        """Split a FASTA file at record boundaries into a new batch, one chunk analysis each."""
        return fasta_batch.split_into_new_batch(self.store, fasta_path, chunks, date, batch)

    def merge_fasta(self, run_id: str) -> FastaMerge:
        """Sum the k-mer tables of a finished fasta-kmers run into Output/{date}/{batch}/merged/."""
        run = self.engine.get_run(run_id)
        return fasta_batch.merge_finished_run(self.store, run, run_layout(run), self.db.jobs(run.id))

    # -- what the Slack front end asks (handlers/) ---------------------------------------------
    def get_run(self, run_id: str) -> Run:
        """The run (NotFound when there is none)."""
        return self.engine.get_run(run_id)

    def start(self, plan: Plan, requested_by: str, *, slack_channel: str | None = None, hold: bool = False,
              allow_concurrent: bool = False) -> Run:
        """Record a planned run and submit it; a held run (`hold=True`) is submitted by nobody until
        `release` (its Slack thread exists) and is given up with `abandon`."""
        return self.engine.start_run(plan, requested_by, slack_channel=slack_channel, submit=not hold, hold=hold,
                                     allow_concurrent=allow_concurrent)

    def release(self, run_id: str, slack_channel: str, slack_thread_ts: str) -> bool:
        """End a run's hold: its thread is `slack_thread_ts`. False when it was no longer held."""
        return self.engine.release(run_id, slack_channel, slack_thread_ts)

    def abandon(self, run_id: str, reason: str) -> bool:
        """Give up a held run, nothing submitted. False when it was no longer held."""
        return self.engine.abandon(run_id, reason)

    def submit_pending(self, run_id: str) -> int:
        return self.engine.submit_pending(run_id)

    def latest_run(self, channel: str) -> Run | None:
        """The latest run started in a Slack channel (one indexed read)."""
        return self.db.latest_run(channel)

    def unfinished_run_ids(self) -> list[str]:
        return self.db.unfinished_run_ids()

    def retry_many(self, run_id: str, seen: Sequence[tuple[str, int]], *, by: str = "notebook",
                   memory_mib: int | None = None, submit: bool = True) -> list[str]:
        """Retry each (analysis, attempt the person saw fail); an analysis that moved on since, or
        cannot be retried any more, is left out. Returns the analyses retried."""
        retried: list[str] = []
        for analysis, attempt in seen:
            try:
                retried += self.engine.retry(run_id, analysis, by=by, memory_mib=memory_mib, submit=False,
                                             expected_attempt=attempt)
            except EngineError:  # retried by someone else, or no longer failed, meanwhile
                continue
        if retried and submit:
            self.engine.submit_pending(run_id)
        return retried

    def summary(self, run_id: str) -> RunSummary:
        return self.engine.summary(run_id)

    def job(self, run_id: str, analysis: str) -> Job | None:
        return self.db.job(run_id, analysis)

    def attempt_resources(self, run_id: str, analysis: str, attempt: int) -> dict[str, Any]:
        """The resources an attempt ran with: the run's, with the attempt's own overrides."""
        run = self.engine.get_run(run_id)
        job = self.db.job(run_id, analysis)
        record = self.db.attempt(job.id, attempt) if job else None
        return {**run.resources, **((record.resources if record else None) or {})}

    def log_excerpt(self, run_id: str, analysis: str, attempt: int | None = None, *, tail: int = 15) -> LogExcerpt:
        return self.engine.log_excerpt(run_id, analysis, attempt, tail=tail)

    def output_uri(self, run: Run, analysis: str | None = None) -> str:
        return self.engine.output_uri(run, analysis)

    def log_uri(self, run: Run, analysis: str, attempt: int) -> str:
        return self.engine.log_uri(run, analysis, attempt)

    def events(self, after: int = 0, *, run_id: str | None = None, limit: int = 500) -> list[RunEvent]:
        """The ledger's durable events after `after` (a consumer's cursor), oldest first."""
        return self.db.events(after, run_id=run_id, limit=limit)

    def check_executor(self) -> None:
        self.engine.check_executor()

    def close(self) -> None:
        """Close the session's connections to the run database."""
        self.db.close()

    def ledger_file(self) -> str | None:
        """The run database's file; None for a PostgreSQL or an in-memory ledger."""
        return None if self.db.postgres or self.db.path == ":memory:" else self.db.path

    def component(self, component: Component) -> ComponentTables:
        """A front end's own tables, registered as a ledger component (created or migrated now)."""
        return ComponentTables(self.db, component)

    def actions(self, run_id: str, *, log_excerpts: Mapping[str, str | None] | None = None) -> RunActions:
        """What the run allows now: retry its failed analyses? cancel it? and per failed analysis
        whether it ran out of memory and the memory to suggest for its retry (within the cap).
        `log_excerpts`: log lines already read, per analysis, to judge a memory death by."""
        run = self.engine.get_run(run_id)
        failed = []
        for job, attempt in self.db.jobs_with_attempts(run_id):  # one read, however many failed
            if job.state == JobState.FAILED:
                memory = {**run.resources, **(attempt.resources or {})}.get("memory_mib")
                failed.append(FailedAttempt(job.analysis, job.attempt, job.reason, job.exit_code,
                                            int(memory) if memory else None, (log_excerpts or {}).get(job.analysis)))
        return run_actions(run_id, run.state, failed, max_memory_mib=self.settings.max_memory_mib)

    def retry_advice(self, run_id: str, analysis: str, attempt: int, reason: str | None, exit_code: int | None,
                     log_excerpt: str | None = None) -> RetryAdvice:
        """`actions` for one failed attempt."""
        failed = self.failed_attempt(run_id, analysis, attempt, reason, exit_code, log_excerpt)
        return run_actions(run_id, RunState.FAILED, [failed], max_memory_mib=self.settings.max_memory_mib).failed[0]

    def failed_attempt(self, run_id: str, analysis: str, attempt: int, reason: str | None, exit_code: int | None,
                       log_excerpt: str | None = None) -> FailedAttempt:
        memory = self.attempt_resources(run_id, analysis, attempt).get("memory_mib")
        return FailedAttempt(analysis, attempt, reason, exit_code, int(memory) if memory else None, log_excerpt)


# What front ends may name: the session and the records and errors it hands out.
__all__ = ["AlreadyRetried", "Attempt", "BadParameters", "BatchInUse", "Component", "ComponentTables", "Conn",
           "Cyto", "DatabaseError", "DryRun", "EngineError", "FastaError", "FastaMerge", "FastaSplit", "Job",
           "LogExcerpt", "NotFound", "OutputFile", "PendingIntents", "Plan", "Record", "ReportLink", "Resources",
           "RetryAdvice", "Run", "RunActions", "RunEvent", "RunSummary", "copy_ledger", "run_layout"]
