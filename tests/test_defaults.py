"""One set of defaults (bot/defaults.py): the settings, the resources, the engine, the CLI's help and
the Slack form all show and use the same values."""

from __future__ import annotations

import inspect

from click.testing import CliRunner

from bot import defaults, failure_policy
from bot.cli import cli
from bot.engine import Engine
from bot.executors import Resources
from bot.settings import Settings
from handlers.modal import RESOURCE_BLOCKS


def test_settings_resources_and_engine_start_from_the_defaults() -> None:
    settings = Settings()
    assert (settings.default_pipeline, settings.poll_seconds, settings.max_memory_mib, settings.log_group) == \
        (defaults.PIPELINE, defaults.POLL_SECONDS, defaults.MAX_MEMORY_MIB, defaults.LOG_GROUP)
    assert Resources() == Resources(defaults.VCPUS, defaults.MEMORY_MIB, defaults.STORAGE_GIB, defaults.TIMEOUT_S,
                                    defaults.RETRIES)
    engine = inspect.signature(Engine).parameters
    assert engine["default_retries"].default == defaults.RETRIES
    assert engine["max_memory_mib"].default == defaults.MAX_MEMORY_MIB == failure_policy.DEFAULT_MAX_MEMORY_MIB


def test_the_cli_help_and_the_slack_form_show_the_defaults() -> None:
    help_text = " ".join(CliRunner().invoke(cli, ["run", "--help"], terminal_width=200).output.split())
    for shown in ("default 1)", "default 2G)", "default 20G)", "default 1h)", f"default {defaults.RETRIES})"):
        assert shown in help_text
    placeholders = {name: hint.split()[0] for name, _, hint in RESOURCE_BLOCKS}
    assert placeholders == {"vcpus": "1", "memory": "2G", "storage": "20G", "timeout": "1h", "retries": "2"}
