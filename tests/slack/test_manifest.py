"""The app manifest declares what the bot uses, and the README explains how to create the app."""

from __future__ import annotations

import yaml
from slack_harness import ROOT

from handlers.slack_check import REQUIRED_SCOPES


def test_manifest_matches_the_bot() -> None:
    manifest = yaml.safe_load((ROOT / "deploy" / "slack-manifest.yaml").read_text())
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/cyto"]
    # chat.postMessage/update, the slash command, conversations.history/replies for the outbox's look-ups,
    # and files:write for the batch overview image in the thread
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {"commands", "chat:write", "channels:history",
                                                              "groups:history", "files:write"}
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == set(REQUIRED_SCOPES), "cyto doctor checks the same"
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["settings"]["socket_mode_enabled"] is True
    # The run form and the App Home (handlers/modal.py, handlers/home.py).
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert "timeout=" in manifest["features"]["slash_commands"][0]["usage_hint"]
    readme = (ROOT / "handlers" / "README.md").read_text()
    assert "deploy/slack-manifest.yaml" in readme and "cyto serve --http" in readme
