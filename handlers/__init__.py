"""The Slack front end: `/cyto` in a channel, one live thread per run, one-click retries.

Layout: `commands` parses slash-command text (pure), `render` builds Block Kit messages (pure),
`permissions` decides who may act (pure), `slack_state` keeps what Slack has been shown in the run
database, `outbox` records every message before it is sent, `reporter` plans those messages from
the database, `sender` delivers them, `listeners` wires Bolt's slash command and button listeners,
`app` assembles them, `serve` runs it all; `slack_check` is the Slack part of `cyto doctor`.
"""
