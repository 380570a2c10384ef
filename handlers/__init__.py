"""The Slack front end: `/cyto` in a channel, one live thread per run, one-click retries. It reaches
the engine through `bot.api.Cyto` only, and holds no run logic: what a run allows and how a retry is
guarded are the library's.

Layout: `commands` parses slash-command text (pure), `render` builds Block Kit messages (pure),
`permissions` decides who may act (pure), `slack_state` keeps what Slack has been shown in the Slack
tables of the run database, `outbox` records every message before it is sent, `reporter` plans those
messages from the ledger's events, `sender` delivers them, `cyto_bot` holds what they share, `listeners` wires Bolt's
slash command and button listeners, `app` assembles the Bolt app, `serve` runs it all, and
`slack_check` is the Slack part of `cyto doctor`.
"""
