"""The Slack part of `cyto doctor`: the bot token (through the same client the bot uses), its
scopes, and the token `cyto serve` needs to receive commands. The CLI's doctor adds these to the
library's checks (bot/doctor.py), which know nothing of Slack."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.doctor import Check
from bot.settings import Settings
from handlers.slack_client import DEFAULT_BASE_URL, make_client

# The bot scopes of deploy/slack-manifest.yaml (tests/slack/test_manifest.py keeps the two equal):
# the slash command, posts and edits, reading back its own posts (the outbox), the overview image.
REQUIRED_SCOPES = ("commands", "chat:write", "channels:history", "groups:history", "files:write")
SLACK_TIMEOUT_S = 10


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return ", ".join(value) if isinstance(value, list | tuple) else str(value)
    return None


def check_slack(settings: Settings) -> list[Check]:
    name = "Slack token"
    if not settings.slack_bot_token:
        return [Check(name, False, "SLACK_BOT_TOKEN is not set",
                      "set SLACK_BOT_TOKEN to the app's Bot User OAuth Token (xoxb-...); on AWS it comes from "
                      "the Slack secret (deploy/README.md)")]
    base = settings.slack_api_url or DEFAULT_BASE_URL
    client = make_client(settings.slack_bot_token, settings.slack_api_url, timeout=SLACK_TIMEOUT_S)
    try:
        response = client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else None
        return [Check(name, False, f"Slack refused SLACK_BOT_TOKEN ({error or exc})",
                      "copy the Bot User OAuth Token (xoxb-...) from the app's OAuth & Permissions page into "
                      "SLACK_BOT_TOKEN (on AWS: the SLACK_BOT_TOKEN key of the Slack secret), then restart the bot")]
    except OSError as exc:
        return [Check(name, False, f"cannot reach the Slack Web API at {base}: {exc}",
                      "check the network, or SLACK_API_URL (unset it to use https://slack.com/api/)")]
    who = f"team {response.get('team')} as @{response.get('user')}"
    checks = [Check(name, True, f"valid for {who} (SLACK_BOT_TOKEN)")]
    granted_text = _header(response.headers or {}, "x-oauth-scopes")
    granted = {s.strip() for s in (granted_text or "").split(",") if s.strip()}
    missing = [s for s in REQUIRED_SCOPES if s not in granted]
    if missing:
        checks.append(Check("Slack scopes", False,
                            f"missing {', '.join(missing)} (the token has: {', '.join(sorted(granted)) or 'none'})",
                            "add the bot scopes from deploy/slack-manifest.yaml to the app and reinstall it "
                            "to the workspace; then update SLACK_BOT_TOKEN if it changed"))
    else:
        checks.append(Check("Slack scopes", True, ", ".join(REQUIRED_SCOPES)))
    checks.append(check_app_token(settings))
    return checks


APP_TOKEN_FIX = ("create an app-level token with the connections:write scope (the app's Basic Information > "
                 "App-Level Tokens) and export SLACK_APP_TOKEN=xapp-...; or serve over HTTP instead "
                 "(cyto serve --http with SLACK_SIGNING_SECRET)")


def check_app_token(settings: Settings) -> Check:
    """Socket Mode (plain `cyto serve`) needs an app-level token; HTTP mode needs the signing secret."""
    token = settings.slack_app_token
    if token and token.startswith("xapp-"):
        return Check("Slack app token", True, "set for Socket Mode (SLACK_APP_TOKEN)")
    if token:
        return Check("Slack app token", False, "SLACK_APP_TOKEN does not start with xapp-", APP_TOKEN_FIX)
    if settings.slack_signing_secret:
        return Check("Slack app token", True, "not set: `cyto serve --http` only (SLACK_SIGNING_SECRET is set)")
    return Check("Slack app token", False, "neither SLACK_APP_TOKEN (Socket Mode) nor SLACK_SIGNING_SECRET "
                 "(HTTP) is set, so `cyto serve` cannot receive commands", APP_TOKEN_FIX)


# For bot.doctor.run_checks(front_end=[SLACK_CHECKS]): (name, fix on an unexpected error, check).
SLACK_CHECKS = ("Slack token", "check SLACK_BOT_TOKEN and SLACK_API_URL", check_slack)
