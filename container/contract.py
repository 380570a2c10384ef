"""The job's environment-variable contract: the only way an executor talks to a job.

Both executors (local process pool and AWS Batch) build a job's environment with
`JobEnvironment.to_env()`, and the entrypoint reads it back with `JobEnvironment.from_env()`,
so the two sides cannot disagree. container/README.md documents the same names.

Files belong to a run: CYTO_OUTPUT_URI is the analysis's output folder, which the job replaces
whole (its `result.json`, written last, names CYTO_RUN_ID and CYTO_ATTEMPT and lists every other
file); CYTO_LOGS_URI is the run's own log folder for the analysis, in which the attempt's log is
`attempt-{CYTO_ATTEMPT}.log`. CYTO_BATCH_INPUT_URI is the batch folder the analysis folder sits in,
from which a job stages only the files its parameters name there (`"gating_file": "../panel.wsp"`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RUN_ID = "CYTO_RUN_ID"  # named in result.json and in the log folder (CYTO_LOGS_URI ends with it)
ATTEMPT = "CYTO_ATTEMPT"
DATE = "CYTO_DATE"
BATCH = "CYTO_BATCH"
ANALYSIS = "CYTO_ANALYSIS"
PIPELINE = "CYTO_PIPELINE"
INPUT_URI = "CYTO_INPUT_URI"
BATCH_INPUT_URI = "CYTO_BATCH_INPUT_URI"  # the batch folder; optional: CYTO_INPUT_URI's parent folder
OUTPUT_URI = "CYTO_OUTPUT_URI"  # the analysis's output folder: after the job, it holds exactly its files
LOGS_URI = "CYTO_LOGS_URI"  # the run's log folder for the analysis: attempt-{N}.log goes in it
PARAMS = "CYTO_PARAMS"
VCPUS = "CYTO_VCPUS"
MEMORY_MIB = "CYTO_MEMORY_MIB"

REQUIRED = (RUN_ID, ATTEMPT, DATE, BATCH, ANALYSIS, PIPELINE, INPUT_URI, OUTPUT_URI, LOGS_URI)

# Exit codes of the entrypoint.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_PARAMETERS = 2  # bad parameters or unreadable input: never retried automatically

# The last line of a failed job's log is this prefix and the reason; the bot reads the reason back
# from it when the executor says no more than an exit code.
ERROR_PREFIX = "ERROR: "


class ContractError(ValueError):
    """The environment does not satisfy the contract (a missing or malformed variable)."""


@dataclass(frozen=True)
class JobEnvironment:
    run_id: str
    attempt: int
    date: str
    batch: str
    analysis: str
    pipeline: str
    input_uri: str
    output_uri: str
    logs_uri: str
    params: Mapping[str, Any] = field(default_factory=dict)
    vcpus: float = 1
    memory_mib: int = 2048
    batch_input_uri: str = ""  # "": the input folder's parent (the store's layout, Input/{date}/{batch}/)

    @property
    def batch_uri(self) -> str:
        """The batch folder (where `../name` in the parameters points); "" when the input has no parent."""
        return self.batch_input_uri or parent_folder_uri(self.input_uri)

    def to_env(self) -> dict[str, str]:
        return {
            RUN_ID: self.run_id,
            ATTEMPT: str(self.attempt),
            DATE: self.date,
            BATCH: self.batch,
            ANALYSIS: self.analysis,
            PIPELINE: self.pipeline,
            INPUT_URI: self.input_uri,
            BATCH_INPUT_URI: self.batch_uri,
            OUTPUT_URI: self.output_uri,
            LOGS_URI: self.logs_uri,
            PARAMS: json.dumps(dict(self.params), sort_keys=True, separators=(",", ":")),
            VCPUS: _format_number(self.vcpus),
            MEMORY_MIB: str(self.memory_mib),
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> JobEnvironment:
        missing = [name for name in REQUIRED if not env.get(name)]
        if missing:
            raise ContractError(f"missing environment variable(s): {', '.join(missing)}")
        try:
            attempt = int(env[ATTEMPT])
        except ValueError:
            raise ContractError(f"{ATTEMPT} must be an integer, got {env[ATTEMPT]!r}") from None
        try:
            params = json.loads(env.get(PARAMS) or "{}")
        except json.JSONDecodeError as exc:
            raise ContractError(f"{PARAMS} is not valid JSON: {exc}") from None
        if not isinstance(params, dict):
            raise ContractError(f"{PARAMS} must be a JSON object, got {type(params).__name__}")
        try:
            vcpus = float(env.get(VCPUS) or 1)
            memory_mib = int(env.get(MEMORY_MIB) or 2048)
        except ValueError as exc:
            raise ContractError(f"{VCPUS}/{MEMORY_MIB} must be numbers: {exc}") from None
        return cls(
            run_id=env[RUN_ID],
            attempt=attempt,
            date=env[DATE],
            batch=env[BATCH],
            analysis=env[ANALYSIS],
            pipeline=env[PIPELINE],
            input_uri=env[INPUT_URI],
            batch_input_uri=env.get(BATCH_INPUT_URI) or "",
            output_uri=env[OUTPUT_URI],
            logs_uri=env[LOGS_URI],
            params=params,
            vcpus=vcpus,
            memory_mib=memory_mib,
        )

    @property
    def log_name(self) -> str:
        """File name of this attempt's log copy under the logs prefix."""
        return attempt_log_name(self.attempt)


def attempt_log_name(attempt: int) -> str:
    return f"attempt-{attempt}.log"


def parent_folder_uri(uri: str) -> str:
    """The folder holding the folder `uri` (`s3://lab/Input/d/b/A01/` -> `s3://lab/Input/d/b/`), with a
    trailing '/'; "" for a bucket or a file system's root, which have none."""
    if "://" in uri:
        scheme, _, rest = uri.partition("://")
        authority, _, path = rest.partition("/")  # the bucket, or a file URI's host ("" or localhost)
        root = f"{scheme}://{authority}/"
    else:
        root, path = "/", uri
    parts = [p for p in path.split("/") if p]
    return root + "".join(p + "/" for p in parts[:-1]) if parts else ""


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
