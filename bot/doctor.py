"""`cyto doctor`: check the configuration against the live services, one line per check.

    ✓ Slack token: valid for team Lab as @cyto (SLACK_BOT_TOKEN)
    ✗ Batch job queue: cyto-bot-queue is DISABLED/VALID (CYTO_BATCH_JOB_QUEUE)
        fix: aws batch update-job-queue --job-queue cyto-bot-queue --state ENABLED

`run_checks(settings)` returns the checks as data; the CLI's `doctor` command prints them and exits
0 only when every check passed. Each check catches its own errors, so one broken setting gives one
red line and the others still run. Components check themselves with the rules a run uses: the store's
`check()`, the executor's `check()` and the Batch queue rule it submits by. The Slack checks belong to
the Slack front end (handlers/slack_check.py); a front end passes them in as `front_end`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.settings import Settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def line(self) -> str:
        mark = "✓" if self.ok else "✗"
        text = f"{mark} {self.name}: {self.detail}"
        if not self.ok and self.fix:
            text += f"\n    fix: {self.fix}"
        return text


def _guard(name: str, fix: str, func: Callable[[], Check | list[Check]]) -> list[Check]:
    """Run one check; an unexpected error becomes that check's red line, not a crash."""
    try:
        result = func()
    except Exception as exc:  # a doctor reports every failure it can, and never stops at the first
        from bot import aws
        from bot.executors import ExecutorError

        # An executor's error wraps the AWS one it met (its cause): a missing region or credentials
        # read the same as when the doctor meets them itself.
        problem = aws.describe_access_problem(exc) or (
            aws.describe_access_problem(exc.__cause__) if isinstance(exc.__cause__, Exception) else None)
        detail = str(exc) if isinstance(exc, ExecutorError) else f"{type(exc).__name__}: {exc}"
        return [Check(name, False, problem or detail, fix)]
    return result if isinstance(result, list) else [result]


# -- the store --------------------------------------------------------------------------------------
def check_store(settings: Settings) -> list[Check]:
    from bot import catalog
    from bot.layout import is_date
    from bot.store import StoreError, open_store

    where = "bucket" if settings.store.startswith("s3://") else "folder"
    inside = _inside_layout(settings.store)
    if inside:
        return [Check(f"Store {where}", False, f"CYTO_STORE={settings.store} points inside the store's "
                      f"{inside}/ folder; the store is the folder that holds Input/, Output/ and Logs/",
                      f"export CYTO_STORE={_quote(_store_above(settings.store, inside))}")]
    if not settings.store.startswith("s3://"):
        folder = os.path.expanduser(settings.store.removeprefix("file://"))
        if not os.path.isdir(folder):
            return [Check("Store folder", False, f"{folder} does not exist (CYTO_STORE)",
                          f"mkdir -p {_quote(folder)}  (then put batches under Input/YYYY-MM-DD/BATCH/ANALYSIS/, "
                          "or run `cyto demo`)")]
    try:
        store = open_store(settings.store)
        store.check()
    except StoreError as exc:
        fix = ("aws cloudformation describe-stacks --stack-name cyto-bot --query "
               "\"Stacks[0].Outputs[?OutputKey=='Store'].OutputValue\" --output text  (set CYTO_STORE to "
               "the stack's Store output; see deploy/README.md)" if where == "bucket"
               else "export CYTO_STORE=~/cyto-data  (or another folder)")
        return [Check(f"Store {where}", False, str(exc), fix)]
    checks = [Check(f"Store {where}", True, f"{store.uri} is reachable (CYTO_STORE)")]
    children = list(store.list_children("Input/"))
    stray = [c for c in children if not is_date(c)]
    if stray:
        shown = ", ".join(f"Input/{c}/" for c in stray[:3]) + (" ..." if len(stray) > 3 else "")
        checks.append(Check("Input/ layout", False, f"folders that are not dates: {shown}",
                            "move them to Input/YYYY-MM-DD/BATCH/ANALYSIS/ (e.g. Input/2018-12-05/batch-7/A01/)"))
    elif not children:
        checks.append(Check("Input/ layout", True,
                            f"no batches yet: upload to {store.uri_for('Input/')}YYYY-MM-DD/BATCH/ANALYSIS/ "
                            "(or run `cyto demo`)"))
    else:
        batches = sum(len(catalog.list_batches(store, d)) for d in children)
        checks.append(Check("Input/ layout", True,
                            f"{len(children)} date(s), {batches} batch(es), latest {children[-1]}"))
    return checks


_LAYOUT_FOLDERS = ("Input", "Output", "Logs")


def _inside_layout(store: str) -> str | None:
    """`Input` when CYTO_STORE names the store's Input/ folder (or one below it), else None."""
    parts = [p for p in store.removeprefix("s3://").removeprefix("file://").split("/") if p]
    for folder in _LAYOUT_FOLDERS:
        if folder in parts[1 if store.startswith("s3://") else 0:]:
            return folder
    return None


def _store_above(store: str, folder: str) -> str:
    head = store.rstrip("/")
    while head and head.rsplit("/", 1)[-1] != folder:
        head = head.rsplit("/", 1)[0]
    return head.rsplit("/", 1)[0] or "/"


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


# -- AWS ----------------------------------------------------------------------------------------------
def uses_aws(settings: Settings) -> bool:
    return settings.executor == "batch" or settings.store.startswith("s3://")


def check_region() -> Check:
    from bot import aws

    region, source = aws.region()
    if region is None:
        return Check("AWS region", False, "no region in AWS_REGION, AWS_DEFAULT_REGION or the AWS profile",
                     "export AWS_REGION=eu-west-1  (the region of the deploy stack)")
    return Check("AWS region", True, f"{region} (from {source})")


# -- Batch and CloudWatch Logs --------------------------------------------------------------------------
def check_batch(settings: Settings, client: Callable[[str], Any]) -> list[Check]:
    """The executor's own view of its queue and job definition, judged by the rule it submits by."""
    from bot.executors import batch_states
    from bot.executors.batch import BatchExecutor

    executor = BatchExecutor.from_settings(settings, client_factory=lambda service, **_: client(service))
    queue_name = executor.job_queue
    checks: list[Check] = []

    def queue() -> list[Check]:
        q = executor.job_queue_record()
        if q is None:
            return [Check("Batch job queue", False, f"{queue_name} does not exist (CYTO_BATCH_JOB_QUEUE)",
                          "set CYTO_BATCH_JOB_QUEUE to the stack's JobQueue output, and AWS_REGION to its region")]
        state, status = q.get("state"), q.get("status")
        if not batch_states.queue_accepts_jobs(q):
            return [Check("Batch job queue", False,
                          f"{queue_name} is {state}/{status}: {q.get('statusReason') or 'not usable'}",
                          f"aws batch update-job-queue --job-queue {queue_name} --state ENABLED"
                          if state != "ENABLED" else "see the queue's status reason in the Batch console")]
        result = [Check("Batch job queue", True, f"{queue_name} is {state}/{status}")]
        envs = executor.compute_environments(q)
        usable = [e for e in envs if e.get("state") == "ENABLED" and e.get("status") == "VALID"]
        if usable:
            result.append(Check("Batch compute environment", True,
                                ", ".join(f"{e['computeEnvironmentName']} ENABLED/VALID" for e in usable)))
        else:
            shown = ", ".join(f"{e.get('computeEnvironmentName')} {e.get('state')}/{e.get('status')}"
                              + (f" ({e['statusReason']})" if e.get("statusReason") else "") for e in envs)
            first = envs[0]["computeEnvironmentName"] if envs else "NAME"
            result.append(Check("Batch compute environment", False,
                                f"no ENABLED/VALID environment behind {queue_name}: {shown or 'none attached'}",
                                f"aws batch update-compute-environment --compute-environment {first} "
                                "--state ENABLED (if INVALID: fix the subnets, security group or roles named in "
                                "the reason, or update the stack)"))
        return result

    def definition() -> Check:
        found = executor.base_definition_record()
        if found is None:
            return Check("Batch job definition", False,
                         f"{executor.job_definition} has no ACTIVE revision (CYTO_BATCH_JOB_DEFINITION)",
                         "set CYTO_BATCH_JOB_DEFINITION to the stack's JobDefinition output (or update the stack)")
        image = (found.get("containerProperties") or {}).get("image", "?")
        return Check("Batch job definition", True, f"{found['jobDefinitionName']}:{found['revision']} ACTIVE, "
                     f"image {image}")

    checks += _guard("Batch job queue", "check CYTO_BATCH_JOB_QUEUE, AWS_REGION and the credentials", queue)
    checks += _guard("Batch job definition", "check CYTO_BATCH_JOB_DEFINITION and AWS_REGION", definition)
    return checks


def check_log_group(settings: Settings, client: Callable[[str], Any]) -> Check:
    logs = client("logs")
    group = settings.log_group
    try:
        # DescribeLogStreams is scoped to the one group (the bot's role may read nothing else).
        logs.describe_log_streams(logGroupName=group, limit=1)
    except Exception as exc:
        from bot import aws

        if aws.error_code(exc) == "ResourceNotFoundException":
            return Check("Log group", False, f"{group} does not exist (CYTO_LOG_GROUP)",
                         "set CYTO_LOG_GROUP to the stack's LogGroup output")
        raise
    return Check("Log group", True, f"{group} exists (CYTO_LOG_GROUP)")


# -- local executor ----------------------------------------------------------------------------------
LOCAL_COMMAND_FIX = ("unset CYTO_LOCAL_COMMAND  (the default runs python -m container.entrypoint), or point it at "
                     "a command that runs the job entrypoint; then `cyto doctor --no-slack` again")


def check_local_jobs(settings: Settings) -> list[Check]:
    from bot.executors import ExecutorError
    from bot.executors.local import LocalExecutor
    from bot.local_check import run_no_op_job

    try:
        LocalExecutor(settings.local_spool, 1).check()
    except ExecutorError as exc:
        elsewhere = _quote(os.path.expanduser("~/cyto-jobs"))
        return [Check("Local job spool", False, str(exc),
                      f"export CYTO_LOCAL_SPOOL={elsewhere}  (any folder you can write)")]
    checks = [Check("Local job spool", True, f"{settings.local_spool} is writable (CYTO_LOCAL_SPOOL)")]
    result = run_no_op_job(settings.local_command)
    if result.ok:
        checks.append(Check("Local jobs", True, f"a no-op job ran in {result.seconds:.1f} s ({result.command})"))
    else:
        checks.append(Check("Local jobs", False, f"a no-op job failed with `{result.command}`: {result.detail}",
                            LOCAL_COMMAND_FIX))
    return checks


# -- the run database ----------------------------------------------------------------------------------
def check_database(settings: Settings) -> Check:
    """The ledger answers, and its schema versions are ones this cyto-bot knows (`RunDB.check`)."""
    from bot.ledger import DatabaseError, RunDB, is_postgres, sqlite_path

    if is_postgres(settings.db):
        try:
            db = RunDB(settings.db)
            try:
                health = db.check()
            finally:
                db.close()
        except DatabaseError as exc:
            return Check("Run database", False, str(exc) if "CYTO_DB" in str(exc) else f"{exc} (CYTO_DB)",
                         "check that the server runs and is reachable from here (the lab's VPN or bastion), and "
                         "the user and password or IAM token in CYTO_DB=postgresql://user@host/database")
        return Check("Run database", True, f"{health.describe()} (CYTO_DB)")
    try:
        path = os.path.expanduser(sqlite_path(settings.db))
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            os.makedirs(directory, exist_ok=True)
        if os.path.exists(path) and not os.access(path, os.W_OK):
            raise DatabaseError(f"{path} is read-only")
        if not os.access(directory, os.W_OK):
            raise DatabaseError(f"{directory} is not writable")
        health = RunDB(settings.db).check()
    except (DatabaseError, OSError) as exc:
        return Check("Run database", False, str(exc) if "CYTO_DB" in str(exc) else f"{exc} (CYTO_DB)",
                     f"export CYTO_DB={_quote(os.path.expanduser('~/cyto-runs.sqlite'))}  (any writable file path; "
                     "its folder is created if missing)")
    return Check("Run database", True, f"{path} is writable; {health.schema()} (CYTO_DB)")


# -- all of it ------------------------------------------------------------------------------------------
FrontEndChecks = Callable[[Settings], list[Check]]


def run_checks(settings: Settings, *, front_end: Sequence[tuple[str, str, FrontEndChecks]] = (),
               client: Callable[[str], Any] | None = None) -> list[Check]:
    """Every check that applies to these settings, in the order a person would fix them. `front_end`
    holds a front end's own checks as (name, fix, check) (the Slack tokens), run first."""
    if client is None:
        from bot import aws

        def client(service: str) -> Any:
            return aws.client(service, retry_mode="standard", max_attempts=2)

    aws_fix = "check AWS_PROFILE, AWS_REGION and the credentials"
    checks: list[Check] = []
    for name, fix, check in front_end:
        checks += _guard(name, fix, functools.partial(check, settings))
    if uses_aws(settings):
        checks += _guard("AWS region", aws_fix, check_region)
    checks += _guard("Store", "check CYTO_STORE, AWS_REGION and the credentials", lambda: check_store(settings))
    if settings.executor == "batch":
        checks += check_batch(settings, client)
        checks += _guard("Log group", "check CYTO_LOG_GROUP, AWS_REGION and the credentials",
                         lambda: check_log_group(settings, client))
    checks += _guard("Run database", "check CYTO_DB", lambda: check_database(settings))
    if settings.executor == "local":
        checks += _guard("Local jobs", LOCAL_COMMAND_FIX, lambda: check_local_jobs(settings))
    return checks


SLACK_VARIABLES = ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET")
SLACK_NOT_CHECKED = "(Slack not checked: no SLACK_* token is set; the CLI and notebooks need none)"
CONFIG_FIX = "fix the environment variable named above"


def slack_configured(env: Mapping[str, str]) -> bool:
    """Whether any Slack token is set: without one, this is CLI-only use and Slack is not checked."""
    return any(env.get(name, "").strip() for name in SLACK_VARIABLES)


def render(checks: Iterable[Check]) -> str:
    return "\n".join(check.line() for check in checks)


def verdict(checks: Sequence[Check]) -> tuple[str, int]:
    """The closing line and the exit code: 0 when every check passed, 1 otherwise."""
    failed = sum(not c.ok for c in checks)
    line = f"\n{len(checks) - failed} of {len(checks)} checks passed" + ("" if failed else " — ready")
    return line, 1 if failed else 0
