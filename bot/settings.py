"""Configuration from environment variables, validated once at start-up.

A bad value raises `ConfigError` naming the variable and what it expected.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from bot import defaults, paths


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    store: str = paths.DEFAULT_STORE
    executor: str = "local"
    db: str = ""  # empty: under the user's state directory, per store and executor (bot/paths.py)
    poll_seconds: float = defaults.POLL_SECONDS
    local_spool: str = ""  # empty: beside the default run database
    local_max_parallel: int | None = None
    local_command: tuple[str, ...] | None = None
    local_keep_days: float = defaults.LOCAL_KEEP_DAYS
    batch_job_queue: str | None = None
    batch_job_definition: str | None = None
    log_group: str = defaults.LOG_GROUP
    allowed_channels: frozenset[str] = field(default_factory=frozenset)
    allowed_users: frozenset[str] = field(default_factory=frozenset)
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    slack_api_url: str | None = None
    default_pipeline: str = defaults.PIPELINE
    max_memory_mib: int = defaults.MAX_MEMORY_MIB  # the out-of-memory rule's cap (bot/failure_policy.py)

    def __post_init__(self) -> None:
        if self.store == paths.DEFAULT_STORE:
            object.__setattr__(self, "store", paths.default_store())
        if not self.db:
            object.__setattr__(self, "db", paths.default_db(self.store, self.executor))
        if not self.local_spool:
            object.__setattr__(self, "local_spool", paths.default_spool(self.store, self.executor))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str, default: str | None = None) -> str | None:
            value = env.get(name)
            return value.strip() if value and value.strip() else default

        settings = cls(
            store=get("CYTO_STORE", cls.store) or cls.store,
            executor=(get("CYTO_EXECUTOR", cls.executor) or cls.executor).lower(),
            db=get("CYTO_DB", "") or "",
            poll_seconds=_number(get("CYTO_POLL_SECONDS"), "CYTO_POLL_SECONDS", cls.poll_seconds, 0.1, 3600),
            local_spool=get("CYTO_LOCAL_SPOOL", "") or "",
            local_max_parallel=_int_or_none(get("CYTO_LOCAL_MAX_PARALLEL"), "CYTO_LOCAL_MAX_PARALLEL"),
            local_command=_command(get("CYTO_LOCAL_COMMAND"), "CYTO_LOCAL_COMMAND"),
            local_keep_days=_number(get("CYTO_LOCAL_KEEP_DAYS"), "CYTO_LOCAL_KEEP_DAYS", cls.local_keep_days,
                                    0.01, 36500),
            batch_job_queue=get("CYTO_BATCH_JOB_QUEUE"),
            batch_job_definition=get("CYTO_BATCH_JOB_DEFINITION"),
            log_group=get("CYTO_LOG_GROUP", cls.log_group) or cls.log_group,
            allowed_channels=_id_set(get("CYTO_ALLOWED_CHANNELS")),
            allowed_users=_id_set(get("CYTO_ALLOWED_USERS")),
            slack_bot_token=get("SLACK_BOT_TOKEN"),
            slack_signing_secret=get("SLACK_SIGNING_SECRET"),
            slack_app_token=get("SLACK_APP_TOKEN"),
            slack_api_url=get("SLACK_API_URL"),
            default_pipeline=get("CYTO_DEFAULT_PIPELINE", cls.default_pipeline) or cls.default_pipeline,
            max_memory_mib=int(_number(get("CYTO_MAX_MEMORY_MIB"), "CYTO_MAX_MEMORY_MIB", cls.max_memory_mib,
                                       128, 1_048_576)),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.executor not in ("local", "batch"):
            raise ConfigError(f"CYTO_EXECUTOR={self.executor!r}: expected 'local' or 'batch'")
        if self.executor == "batch":
            missing = [n for n, v in (("CYTO_BATCH_JOB_QUEUE", self.batch_job_queue),
                                      ("CYTO_BATCH_JOB_DEFINITION", self.batch_job_definition)) if not v]
            if missing:
                raise ConfigError(f"CYTO_EXECUTOR=batch needs {' and '.join(missing)} "
                                  "(the job queue and job definition names from the deploy stack's outputs)")
            if not self.store.startswith("s3://"):
                raise ConfigError(f"CYTO_EXECUTOR=batch needs CYTO_STORE=s3://bucket[/prefix], not {self.store!r}: "
                                  "Batch jobs cannot read a local folder")
        scheme = self.store.partition(":")[0]
        if ":" in self.store and len(scheme) > 1 and scheme.isalnum() and not self.store.startswith(("s3://", "file://")):
            raise ConfigError(f"CYTO_STORE={self.store!r}: expected a folder or s3://bucket[/prefix]")
        if self.store.startswith("s3://") and not self.store[5:].split("/")[0]:
            raise ConfigError(f"CYTO_STORE={self.store!r}: expected s3://bucket[/prefix]")
        from container.pipelines import available

        if self.default_pipeline not in available():
            import difflib

            close = difflib.get_close_matches(self.default_pipeline, available(), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"CYTO_DEFAULT_PIPELINE={self.default_pipeline!r} is not a pipeline: {hint}"
                              f"(choose one of: {', '.join(available())})")
        if self.slack_api_url and not self.slack_api_url.startswith(("http://", "https://")):
            raise ConfigError(f"SLACK_API_URL={self.slack_api_url!r}: expected an http(s) URL")


def _number(text: str | None, name: str, default: float, low: float, high: float) -> float:
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r}: expected a number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={text!r}: expected a number between {low:g} and {high:g}")
    return value


def _int_or_none(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{name}={text!r}: expected a whole number of at least 1")
    return int(text)


def _command(text: str | None, name: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    try:
        parts = tuple(shlex.split(text))
    except ValueError as exc:
        raise ConfigError(f"{name}={text!r}: expected a shell-style command line ({exc})") from None
    return parts or None


def _id_set(text: str | None) -> frozenset[str]:
    if not text:
        return frozenset()
    return frozenset(part.strip() for part in text.replace(";", ",").split(",") if part.strip())
