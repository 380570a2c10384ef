"""cyto-bot: fan a batch of analyses out to parallel jobs and follow it from Slack, a CLI or a notebook."""

__version__ = "0.1.0"
