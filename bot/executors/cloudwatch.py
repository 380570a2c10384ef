"""An attempt's log from CloudWatch Logs: the stream Batch names in `container.logStreamName`.

GetLogEvents has no botocore paginator: the documented way to the end of a stream is to follow
`nextForwardToken` until the same token comes back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot import aws
from bot.executors import ExecutorError

MAX_LOG_CHARS = 20_000_000  # a runaway log stops here; excerpts need the first error and the tail


class LogReader:
    def __init__(self, client: Callable[[], Any], group: str, max_chars: int = MAX_LOG_CHARS) -> None:
        self._client = client
        self.group = group
        self.max_chars = max_chars

    def read(self, stream: str) -> str | None:
        """The stream's lines joined by newlines, or None when the stream does not exist (yet)."""
        lines: list[str] = []
        size = 0
        token: str | None = None
        kwargs: dict[str, Any] = {"logGroupName": self.group, "logStreamName": stream, "startFromHead": True}
        try:
            while True:
                page = self._client().get_log_events(**kwargs, **({"nextToken": token} if token else {}))
                for event in page.get("events", []):
                    lines.append(event["message"].rstrip("\n"))
                    size += len(event["message"]) + 1
                following = page.get("nextForwardToken")
                if not following or following == token or size > self.max_chars:
                    break
                token = following
        except Exception as exc:
            if aws.error_code(exc) == "ResourceNotFoundException":
                return None
            problem = aws.describe_access_problem(exc)
            if problem or aws.error_code(exc):
                raise ExecutorError(f"cannot read the log {self.group}/{stream} (CYTO_LOG_GROUP): "
                                    f"{problem or exc}") from exc
            raise
        return "\n".join(lines) + "\n" if lines else None
