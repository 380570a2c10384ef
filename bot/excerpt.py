"""Choose the part of a log worth showing a scientist: the first error in context and the last lines.
Pure code: text in, excerpt out."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Markers of the first real error, in the order they are tried on each line.
ERROR_PATTERNS = (
    re.compile(r"^Traceback \(most recent call last\):"),
    re.compile(r"^Error in |^Error: |^Execution halted"),
    re.compile(r"\bKilled\b|\bOut of memory\b|MemoryError|Segmentation fault"),
    re.compile(r"^ERROR\b|\bERROR:"),
)
DEFAULT_MAX_CHARS = 2500  # fits a Slack section (3,000 chars) with room for the code fence
ELLIPSIS = "…"


@dataclass(frozen=True)
class Excerpt:
    text: str
    first_error_line: int | None  # 1-based line number in the full log
    total_lines: int
    truncated: bool

    @property
    def empty(self) -> bool:
        return not self.text.strip()


def first_error(lines: list[str]) -> int | None:
    for index, line in enumerate(lines):
        if any(p.search(line) for p in ERROR_PATTERNS):
            return index
    return None


def select(log: str, tail: int = 15, context_before: int = 3, context_after: int = 12,
           max_chars: int = DEFAULT_MAX_CHARS) -> Excerpt:
    """The lines around the first error plus the last `tail` lines, trimmed to `max_chars`."""
    lines = log.splitlines()
    total = len(lines)
    err = first_error(lines)
    keep: set[int] = set(range(max(0, total - tail), total))
    if err is not None:
        keep |= set(range(max(0, err - context_before), min(total, err + context_after + 1)))
    chosen = sorted(keep)
    parts: list[str] = []
    previous = -1
    for index in chosen:
        if (previous >= 0 and index != previous + 1) or (previous < 0 and index > 0):
            parts.append(f"{ELLIPSIS} ({index - previous - 1} lines)")
        parts.append(lines[index])
        previous = index
    text = "\n".join(parts)
    truncated = len(chosen) < total
    if len(text) > max_chars:
        text = _fit(parts, max_chars)
        truncated = True
    return Excerpt(text, None if err is None else err + 1, total, truncated)


def _fit(parts: list[str], max_chars: int) -> str:
    """Keep the start (where the first error is) and the end (the final reason), drop the middle."""
    marker = f"{ELLIPSIS} (trimmed)"
    budget = max_chars - len(marker) - 2
    head_budget = budget // 2
    head: list[str] = []
    used = 0
    for part in parts:
        if used + len(part) + 1 > head_budget:
            break
        head.append(part)
        used += len(part) + 1
    tail: list[str] = []
    used_tail = 0
    for part in reversed(parts[len(head):]):
        if used + used_tail + len(part) + 1 > budget:
            break
        tail.insert(0, part)
        used_tail += len(part) + 1
    if not head and not tail:
        return parts[-1][-budget:] if parts else ""
    return "\n".join([*head, marker, *tail])
