"""AWS Batch as the executor: one Batch job per attempt of an analysis (`CYTO_EXECUTOR=batch`).

`BatchExecutor` holds the only boto3 `batch` client; Batch state strings live in batch_states.py.

Two levels of retry, on purpose:
- Batch's own `retryStrategy` retries an attempt only for infrastructure failures (a reclaimed Spot
  host: statusReason `Host EC2*`), inside the same Batch job, because nothing about the analysis changes.
  Every other failure EXITs at once (`evaluateOnExit`), so a bad input is not run again by Batch.
- The engine's automatic retries (`--retries`) then start a new attempt as a new Batch job with a new
  deterministic name (`...-a2`), which the run database records and the bot shows. A person's retry
  with more memory is such a new attempt too: a Batch retry cannot change memory.

Storage (`--storage`): Batch cannot override storage at submit time, so each storage size gets its
own job definition, derived from CYTO_BATCH_JOB_DEFINITION: same container, with
`ephemeralStorage.sizeInGiB` set (Fargate), named `<definition>-storage-<N>gib` and tagged with the
revision it was derived from. It is registered the first time a size is used, found again by name and
tag afterwards (also by other processes), and cached. The default size (the base definition's own,
or 20 GiB) uses the configured definition unchanged. On EC2 the disk comes from the compute
environment's launch template, so a non-default size is refused with a message saying so.

Submitting thousands: the engine submits through a pool of `submit_concurrency` threads sharing
one client with botocore's "standard" retry mode (up to 10 attempts, jittered exponential backoff),
so `TooManyRequestsException` slows submission down and is retried rather than lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from bot import aws, defaults
from bot.executors import ExecutorError, JobSpec, JobStatus
from bot.executors import batch_states as bs
from bot.executors.cloudwatch import LogReader
from bot.settings import Settings
from bot.states import JobState

DESCRIBE_CHUNK = 100  # DescribeJobs takes at most 100 ids
BATCH_ATTEMPTS = 2  # one more try inside Batch for a reclaimed host; see the module docstring
DEFAULT_STORAGE_GIB = defaults.STORAGE_GIB  # a base definition's size when it names none
FARGATE_STORAGE_GIB = (21, 200)
STUCK_AFTER_S = 30 * 60
STUCK_CACHE_S = 300.0
RETRY_STRATEGY_RULES = (
    {"onStatusReason": "Host EC2*", "action": "RETRY"},
    {"onStatusReason": "*", "action": "EXIT"},
    {"onReason": "*", "action": "EXIT"},
    {"onExitCode": "*", "action": "EXIT"},
)
# Read-only fields of a DescribeJobDefinitions record that RegisterJobDefinition does not take.
_REGISTER_FIELDS = ("type", "parameters", "schedulingPriority", "containerProperties", "nodeProperties",
                    "retryStrategy", "propagateTags", "timeout", "platformCapabilities", "eksProperties")


class BatchExecutor:
    name = "batch"

    def __init__(self, job_queue: str, job_definition: str, *, log_group: str = defaults.LOG_GROUP,
                 submit_concurrency: int = 8, batch_attempts: int = BATCH_ATTEMPTS,
                 stuck_after_s: float = STUCK_AFTER_S, client_factory: Callable[..., Any] = aws.client,
                 clock: Callable[[], float] = time.time) -> None:
        self.job_queue = job_queue
        self.job_definition = job_definition
        self.submit_concurrency = submit_concurrency
        self.batch_attempts = batch_attempts
        self.stuck_after_s = stuck_after_s
        self.clock = clock
        self._client_factory = client_factory
        self._clients: dict[str, Any] = {}
        self._lock = threading.RLock()  # check() holds it while _client() takes it
        self._checked: ExecutorError | bool = False
        self._base: dict[str, Any] | None = None
        self._definitions: dict[int, str] = {}
        self._definitions_lock = threading.Lock()
        self._stuck_cache: dict[tuple[float, int], tuple[float, str | None]] = {}
        self.logs = LogReader(lambda: self._client("logs"), log_group)

    @classmethod
    def from_settings(cls, settings: Settings, client_factory: Callable[..., Any] = aws.client) -> BatchExecutor:
        if not settings.batch_job_queue or not settings.batch_job_definition:
            raise ExecutorError("CYTO_EXECUTOR=batch needs CYTO_BATCH_JOB_QUEUE and CYTO_BATCH_JOB_DEFINITION "
                                "(the job queue and job definition names from the deploy stack's outputs)")
        return cls(settings.batch_job_queue, settings.batch_job_definition, log_group=settings.log_group,
                   client_factory=client_factory)

    # -- clients and errors -------------------------------------------------------------------
    def _client(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is None:
            with self._lock, self._errors(f"the AWS {service} client"):
                client = self._clients.get(service) or self._client_factory(
                    service, max_pool_connections=max(10, self.submit_concurrency + 2))
                self._clients[service] = client
        return client

    @property
    def batch(self) -> Any:
        return self._client("batch")

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except ExecutorError:
            raise
        except Exception as exc:
            if not type(exc).__module__.startswith(("botocore.", "boto3.")):
                raise
            problem = aws.describe_access_problem(exc)
            if problem is None and aws.error_code(exc) in ("AccessDeniedException", "AccessDenied"):
                problem = "access denied: the AWS credentials in use need batch:* on the job queue"
            raise ExecutorError(f"{doing}: {problem or exc}") from exc

    # -- checks -------------------------------------------------------------------------------
    def check(self) -> None:
        """Raise ExecutorError naming the setting when the queue or definition cannot be used."""
        with self._lock:
            if isinstance(self._checked, ExecutorError):
                raise self._checked
            if self._checked:
                return
            try:
                self._check_queue()
                self._base = self._load_base_definition()
            except ExecutorError as exc:
                # Remembered: a thousand submissions must not each ask again and each fail the same way.
                self._checked = exc
                raise
            self._checked = True

    def _check_queue(self) -> None:
        queue = self.job_queue_record()
        if queue is None:
            raise ExecutorError(f"the Batch job queue {self.job_queue!r} does not exist in this account and "
                                "region: set CYTO_BATCH_JOB_QUEUE to the queue from the deploy stack's outputs "
                                "(and AWS_REGION to its region)")
        if not bs.queue_accepts_jobs(queue):
            raise ExecutorError(f"the Batch job queue {self.job_queue!r} is {queue.get('state')}/"
                                f"{queue.get('status')}: enable it, or set CYTO_BATCH_JOB_QUEUE to another")

    def _load_base_definition(self) -> dict[str, Any]:
        found = self.base_definition_record()
        if found is None:
            raise ExecutorError(f"the Batch job definition {self.job_definition!r} does not exist or is inactive: "
                                "set CYTO_BATCH_JOB_DEFINITION to the definition from the deploy stack's outputs")
        return found

    # -- what check() looks at, for the doctor's detailed report ---------------------------------
    def job_queue_record(self) -> dict[str, Any] | None:
        """The configured job queue as DescribeJobQueues reports it, or None when there is none."""
        with self._errors(f"cannot check the Batch job queue {self.job_queue!r} (CYTO_BATCH_JOB_QUEUE)"):
            queues = self.batch.describe_job_queues(jobQueues=[self.job_queue]).get("jobQueues", [])
        return queues[0] if queues else None

    def compute_environments(self, queue: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The compute environments behind a job queue, in the queue's order."""
        arns = [e["computeEnvironment"] for e in sorted(queue.get("computeEnvironmentOrder", []),
                                                          key=lambda e: e.get("order", 0))]
        if not arns:
            return []
        with self._errors("cannot describe the job queue's compute environments"):
            return list(self.batch.describe_compute_environments(computeEnvironments=arns)
                        .get("computeEnvironments", []))

    def base_definition_record(self) -> dict[str, Any] | None:
        """The job definition jobs are submitted with: the newest ACTIVE revision of a name, or the one
        revision (`name:3`, an ARN) named; None when there is none."""
        ident = self.job_definition
        by_name = ":" not in ident
        query = {"jobDefinitionName": ident, "status": "ACTIVE"} if by_name else {"jobDefinitions": [ident]}
        with self._errors(f"cannot check the Batch job definition {ident!r} (CYTO_BATCH_JOB_DEFINITION)"):
            found = [d for page in self.batch.get_paginator("describe_job_definitions").paginate(**query)
                     for d in page.get("jobDefinitions", []) if d.get("status") == "ACTIVE"]
        return max(found, key=lambda d: d["revision"]) if found else None

    # -- storage: one job definition revision per size ------------------------------------------
    def definition_for(self, storage_gib: int) -> str:
        self.check()
        base = self._base
        assert base is not None
        own = ((base.get("containerProperties") or {}).get("ephemeralStorage") or {}).get("sizeInGiB")
        if storage_gib == (own or DEFAULT_STORAGE_GIB):
            return self.job_definition
        if "FARGATE" not in (base.get("platformCapabilities") or []):
            raise ExecutorError(f"--storage {storage_gib}: on EC2 the disk size comes from the compute "
                                "environment's launch template, not the job; run without --storage or use a "
                                "Fargate job definition (CYTO_BATCH_JOB_DEFINITION)")
        low, high = FARGATE_STORAGE_GIB
        if not low <= storage_gib <= high:
            raise ExecutorError(f"--storage {storage_gib}: Fargate jobs can have {low}..{high} GiB")
        # Held across lookup and registration, so concurrent first submissions register one revision.
        with self._definitions_lock:
            if storage_gib not in self._definitions:
                self._definitions[storage_gib] = self._find_or_register(base, storage_gib)
            return self._definitions[storage_gib]

    def _find_or_register(self, base: Mapping[str, Any], storage_gib: int) -> str:
        name = derived_definition_name(base["jobDefinitionName"], storage_gib)
        tags = {"cyto:base": base["jobDefinitionArn"], "cyto:storage-gib": str(storage_gib)}
        with self._errors(f"cannot prepare the job definition for --storage {storage_gib}"):
            pages = self.batch.get_paginator("describe_job_definitions").paginate(
                jobDefinitionName=name, status="ACTIVE")
            for page in pages:
                for found in page.get("jobDefinitions", []):
                    if (found.get("tags") or {}).get("cyto:base") == tags["cyto:base"]:
                        return found["jobDefinitionArn"]
            request = {k: base[k] for k in _REGISTER_FIELDS if base.get(k) is not None}
            container = dict(request["containerProperties"])
            container["ephemeralStorage"] = {"sizeInGiB": storage_gib}
            request["containerProperties"] = container
            response = self.batch.register_job_definition(jobDefinitionName=name, tags=tags, **request)
            return response["jobDefinitionArn"]

    # -- the Executor interface -------------------------------------------------------------
    def submit(self, spec: JobSpec) -> str:
        definition = self.definition_for(spec.resources.storage_gib)
        request = submit_request(spec, self.job_queue, definition, self.batch_attempts)
        with self._errors(f"SubmitJob {spec.name} to queue {self.job_queue!r} (CYTO_BATCH_JOB_QUEUE)"):
            return self.batch.submit_job(**request)["jobId"]

    def find(self, job_name: str) -> str | None:
        """ListJobs with a JOB_NAME filter covers every status; the newest job of that name wins."""
        self.check()
        matches: list[Mapping[str, Any]] = []
        with self._errors(f"ListJobs on queue {self.job_queue!r} (CYTO_BATCH_JOB_QUEUE)"):
            pages = self.batch.get_paginator("list_jobs").paginate(
                jobQueue=self.job_queue, filters=[{"name": "JOB_NAME", "values": [job_name]}])
            for page in pages:
                matches += [j for j in page.get("jobSummaryList", []) if j.get("jobName") == job_name]
        if not matches:
            return None
        return max(matches, key=lambda j: j.get("createdAt", 0))["jobId"]

    def describe(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        statuses: dict[str, JobStatus] = {}
        ids = list(dict.fromkeys(job_ids))
        for start in range(0, len(ids), DESCRIBE_CHUNK):
            with self._errors("DescribeJobs"):
                jobs = self.batch.describe_jobs(jobs=ids[start:start + DESCRIBE_CHUNK]).get("jobs", [])
            for job in jobs:
                status = bs.to_status(job)
                if job["status"] == "RUNNABLE" and self._runnable_too_long(job):
                    stuck = self._stuck_reason_for(job)
                    if stuck:
                        status = JobStatus(status.job_id, status.state, f"waiting to start: {stuck}",
                                           status.exit_code, status.log_ref, status.started_at, status.stopped_at)
                statuses[job["jobId"]] = status
        return statuses

    def cancel(self, job_id: str, reason: str) -> None:
        """CancelJob while the job waits for a machine; TerminateJob once it has one."""
        with self._errors(f"cannot cancel Batch job {job_id}"):
            jobs = self.batch.describe_jobs(jobs=[job_id]).get("jobs", [])
            if not jobs:
                return
            if jobs[0]["status"] in bs.NOT_STARTED:
                self.batch.cancel_job(jobId=job_id, reason=bs.cancel_reason(reason))
            elif jobs[0]["status"] in bs.STARTED:
                self.batch.terminate_job(jobId=job_id, reason=bs.cancel_reason(reason))

    def read_log(self, status: JobStatus) -> str | None:
        if not status.log_ref:
            return None
        return self.logs.read(status.log_ref)

    def flush(self) -> None:
        """Nothing to start: Batch queues each job as it is submitted."""

    def explain(self, status: JobStatus, resources: Mapping[str, Any]) -> str | None:
        """Plain words when Batch itself stopped the attempt (used by the engine's log excerpts)."""
        if status.state == JobState.CANCELLED:
            return None
        return bs.explain(status.reason, status.exit_code, resources)

    # -- stuck jobs ---------------------------------------------------------------------------
    def _runnable_too_long(self, job: Mapping[str, Any]) -> bool:
        # Batch reports no "RUNNABLE since"; createdAt is the conservative stand-in.
        created = (job.get("createdAt") or 0) / 1000.0
        return bool(created) and self.clock() - created > self.stuck_after_s

    def _stuck_reason_for(self, job: Mapping[str, Any]) -> str | None:
        needs = bs.job_needs(job)
        now = self.clock()
        cached = self._stuck_cache.get(needs)
        if cached and now - cached[0] < STUCK_CACHE_S:
            return cached[1]
        try:
            reason = self._diagnose(*needs)
        except ExecutorError:
            reason = None  # a diagnosis is a courtesy: never fail a poll for it
        self._stuck_cache[needs] = (now, reason)
        return reason or (job.get("statusReason") or None)

    def _diagnose(self, vcpus: float, memory_mib: int) -> str | None:
        with self._errors("cannot inspect the job queue and compute environments"):
            queues = self.batch.describe_job_queues(jobQueues=[self.job_queue]).get("jobQueues", [])
            queue = queues[0] if queues else None
            env_arns = [e["computeEnvironment"] for e in (queue or {}).get("computeEnvironmentOrder", [])]
            environments = self.batch.describe_compute_environments(
                computeEnvironments=env_arns).get("computeEnvironments", []) if env_arns else []
        sizes = self._instance_sizes(environments)
        return bs.diagnose_stuck(queue, environments, vcpus, memory_mib, sizes)

    def _instance_sizes(self, environments: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, int]] | None:
        """vCPUs and MiB of the environments' instance types, when every one is an exact size."""
        types = {t for env in environments for t in (env.get("computeResources") or {}).get("instanceTypes", [])}
        if not types or any("." not in t for t in types):  # "optimal" or a family: any size may be chosen
            return None
        try:
            pages = self._client("ec2").get_paginator("describe_instance_types").paginate(InstanceTypes=sorted(types))
            return {t["InstanceType"]: (t["VCpuInfo"]["DefaultVCpus"], t["MemoryInfo"]["SizeInMiB"])
                    for page in pages for t in page.get("InstanceTypes", [])}
        except Exception:  # no ec2:DescribeInstanceTypes permission: diagnose without sizes
            return None


def derived_definition_name(base_name: str, storage_gib: int) -> str:
    suffix = f"-storage-{storage_gib}gib"
    return base_name[: 128 - len(suffix)] + suffix


def submit_request(spec: JobSpec, queue: str, definition: str, attempts: int) -> dict[str, Any]:
    """The SubmitJob payload for one attempt. Pure."""
    resources = spec.resources
    vcpus = resources.vcpus
    return {
        "jobName": spec.name,
        "jobQueue": queue,
        "jobDefinition": definition,
        "containerOverrides": {
            "environment": [{"name": k, "value": str(v)} for k, v in sorted(spec.environment().items())
                            if v is not None],
            "resourceRequirements": [
                {"type": "VCPU", "value": str(int(vcpus)) if float(vcpus).is_integer() else str(vcpus)},
                {"type": "MEMORY", "value": str(int(resources.memory_mib))},
            ],
        },
        "retryStrategy": {"attempts": attempts, "evaluateOnExit": [dict(rule) for rule in RETRY_STRATEGY_RULES]},
        "timeout": {"attemptDurationSeconds": max(60, int(resources.timeout_s))},
        "tags": {k: v for k, v in spec.tags.items() if v},
        "propagateTags": True,
    }
