"""Every default a person would otherwise meet as a bare number in several places: one module, read
by the settings, the executors' `Resources`, the engine, the Python API, the CLI's help and the Slack
form. Imports nothing, so anything may import it."""

from __future__ import annotations

PIPELINE = "cytometry"  # CYTO_DEFAULT_PIPELINE overrides it

# Resources of each job, unless a run asks for others.
VCPUS = 1.0
MEMORY_MIB = 2048
STORAGE_GIB = 20  # scratch disk; also the size a Batch job definition without its own is taken to have
TIMEOUT_S = 3600
RETRIES = 2  # automatic retries of a failed analysis (a new attempt each)

MAX_MEMORY_MIB = 65_536  # the out-of-memory rule doubles memory up to this (CYTO_MAX_MEMORY_MIB)
POLL_SECONDS = 10.0  # how often the bot polls the executor (CYTO_POLL_SECONDS)
LOCAL_KEEP_DAYS = 30.0  # how long the local executor keeps finished jobs' files (CYTO_LOCAL_KEEP_DAYS)
LOG_GROUP = "/aws/batch/job"  # where Batch jobs' logs are (CYTO_LOG_GROUP)
