"""Storage layout rules: where a batch's inputs, outputs and logs live. Pure code, no I/O.

    Input/{YYYY-MM-DD}/{batch}/{analysis}/...                   what the lab drops in
    Output/{YYYY-MM-DD}/{batch}/{analysis}/...                  what a job writes (one run's results, whole)
    Output/{YYYY-MM-DD}/{batch}.run-{run}/{analysis}/...        ... of a run started alongside another
    Logs/{YYYY-MM-DD}/{batch}/{analysis}/{run}/attempt-{N}.log  a copy of each attempt's log
    Output/{YYYY-MM-DD}/{batch}/_runs/{run}/...                 one run's own results (report, merged tables);
                                                                `_runs` is reserved: no analysis is named so

Files belong to a run: logs are always run-scoped; outputs go to the batch's Output folder unless
the run was started (with --allow-concurrent) while another run of the batch was unfinished, and
then to its own `{batch}.run-{run}` folder, so two runs never write the same place.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from container.contract import attempt_log_name

INPUT = "Input"
OUTPUT = "Output"
LOGS = "Logs"

RUNS = "_runs"  # reserved: the run-scoped folder beside the analyses' outputs
RESERVED_ANALYSIS_NAMES = frozenset({RUNS})
MAX_NAME_LENGTH = 200
_DATE_SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class LayoutError(ValueError):
    """A date, batch or analysis name that cannot be used; the message says why."""


def parse_date(text: str) -> str:
    """Return `text` if it is a real calendar date written YYYY-MM-DD."""
    if not _DATE_SHAPE.match(text or ""):
        raise LayoutError(f"date {text!r} is not written YYYY-MM-DD (for example 2018-12-05)")
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        raise LayoutError(f"date {text!r} is not a real calendar date") from None
    return text


def is_date(text: str) -> bool:
    try:
        parse_date(text)
    except LayoutError:
        return False
    return True


def check_name(name: str, what: str = "name") -> str:
    """Refuse names that could escape their prefix or that no store can hold."""
    if not name or not name.strip():
        raise LayoutError(f"{what} is empty")
    if name in (".", ".."):
        raise LayoutError(f"{what} {name!r} is not allowed")
    if "/" in name or "\\" in name:
        raise LayoutError(f"{what} {name!r} must not contain '/' or '\\'")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in name):
        raise LayoutError(f"{what} {name!r} contains control characters")
    if name != name.strip():
        raise LayoutError(f"{what} {name!r} starts or ends with spaces")
    if len(name) > MAX_NAME_LENGTH:
        raise LayoutError(f"{what} is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed")
    return name


def check_analysis_name(name: str) -> str:
    """An analysis name is a folder name that is not reserved for the run's own outputs."""
    check_name(name, "analysis name")
    if name in RESERVED_ANALYSIS_NAMES:
        raise LayoutError(f"analysis name {name!r} is reserved for run reports; rename the folder")
    return name


@dataclass(frozen=True)
class BatchRef:
    date: str
    batch: str
    # The run whose outputs are kept apart (a run started alongside another); None: the batch's own folder.
    output_run: str | None = None

    def __post_init__(self) -> None:
        parse_date(self.date)
        check_name(self.batch, "batch name")

    @property
    def label(self) -> str:
        return f"{self.date}/{self.batch}"

    @property
    def input_prefix(self) -> str:
        return f"{INPUT}/{self.date}/{self.batch}/"

    @property
    def output_prefix(self) -> str:
        if self.output_run is not None:
            return f"{OUTPUT}/{self.date}/{self.batch}.run-{self.output_run}/"
        return f"{OUTPUT}/{self.date}/{self.batch}/"

    @property
    def logs_prefix(self) -> str:
        return f"{LOGS}/{self.date}/{self.batch}/"

    def run_prefix(self, run_id: str) -> str:
        """Where one run's own outputs (report, merged tables) go: never an analysis's folder."""
        return f"{self.output_prefix}{RUNS}/{check_name(run_id, 'run id')}/"

    def analysis(self, name: str) -> AnalysisRef:
        return AnalysisRef(self, check_analysis_name(name))


@dataclass(frozen=True)
class AnalysisRef:
    batch_ref: BatchRef
    name: str

    @property
    def input_prefix(self) -> str:
        return f"{self.batch_ref.input_prefix}{self.name}/"

    @property
    def output_prefix(self) -> str:
        return f"{self.batch_ref.output_prefix}{self.name}/"

    @property
    def logs_prefix(self) -> str:
        return f"{self.batch_ref.logs_prefix}{self.name}/"

    def run_logs_prefix(self, run_id: str) -> str:
        """Where one run's attempts of this analysis leave their logs."""
        return f"{self.logs_prefix}{check_name(run_id, 'run id')}/"

    def attempt_log_key(self, run_id: str, attempt: int) -> str:
        """The key of one attempt's log: the only place `cyto logs`, excerpts and links look."""
        return self.run_logs_prefix(run_id) + attempt_log_name(attempt)


def nearest(name: str, candidates: Iterable[str], limit: int = 3) -> list[str]:
    """The candidates that look most like `name` (close spellings first)."""
    pool = list(dict.fromkeys(candidates))
    close = difflib.get_close_matches(name, pool, n=limit, cutoff=0.4)
    return close + [c for c in sorted(pool) if c not in close][: max(0, limit - len(close))]


def nearest_dates(date: str, dates: Iterable[str], limit: int = 3) -> list[str]:
    """The existing dates closest in time to `date`, nearest first."""
    target = dt.date.fromisoformat(date)
    valid = [d for d in dates if is_date(d)]
    return sorted(valid, key=lambda d: (abs((dt.date.fromisoformat(d) - target).days), d))[:limit]
