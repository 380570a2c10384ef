"""Rules the test suite keeps about itself: every deadline goes through tests/timeouts.py, our own code
is imported plainly, and under CI=true a skip is a failure unless the test needs external data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.timeouts import ENV, scale_from, seconds

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
# A Batch job's own attemptDurationSeconds, emulated: the product's timeout, not the tests' patience.
EMULATED_JOB_TIMEOUT = TESTS / "aws" / "batch_shim.py"

BARE_DEADLINE = re.compile(r"(?:time\.time|monotonic)\(\) *\+ *\d")
BARE_TIMEOUT = re.compile(r"\btimeout(?:=|: float = )\d+(?:\.\d+)?\s*[,)\n]")
OWN_IMPORTORSKIP = re.compile(r"importorskip\(\s*[\"'](?:bot|handlers|container|tests)\b")


def sources() -> list[Path]:
    return [p for p in sorted(TESTS.rglob("*.py")) if p.name != "timeouts.py"]


@pytest.mark.parametrize("pattern", [BARE_DEADLINE, BARE_TIMEOUT], ids=["deadline", "timeout"])
def test_every_deadline_is_scaled(pattern: re.Pattern[str]) -> None:
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in sources() if path != EMULATED_JOB_TIMEOUT
             for number, line in enumerate(path.read_text().splitlines(), start=1)
             if pattern.search(line + "\n")]
    assert found == [], "wrap the number in tests.timeouts.seconds() / deadline_after():\n" + "\n".join(found)


def test_the_scale_is_a_positive_number_defaulting_to_one() -> None:
    assert scale_from({}) == 1 and scale_from({ENV: " "}) == 1 and scale_from({ENV: "2.5"}) == 2.5
    for bad in ("0", "-1", "slow"):
        with pytest.raises(ValueError, match=ENV):
            scale_from({ENV: bad})


def test_our_own_code_is_imported_plainly() -> None:
    found = [str(path.relative_to(ROOT)) for path in sources() if OWN_IMPORTORSKIP.search(path.read_text())]
    assert found == []


SKIPPING = '''
import pytest

def test_skips():
    pytest.skip("no tool here")

@pytest.mark.skipif(True, reason="not on this machine")
def test_skipif():
    pass

@pytest.mark.external_data("a reference set no registry carries")
@pytest.mark.skipif(True, reason="the reference set is absent")
def test_external():
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_known():
    assert False

def test_passes():
    pass
'''


def run_suite(tmp_path: Path, ci: str | None) -> dict[str, str]:
    (tmp_path / "test_sample.py").write_text(SKIPPING)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
                           "-rA", "-q", "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=seconds(60))
    outcomes = {}
    for line in proc.stdout.splitlines():
        if match := re.match(r"(PASSED|FAILED|ERROR|SKIPPED|XFAIL)\b.*::(test_\w+)", line):
            outcomes[match[2]] = match[1]
        elif match := re.match(r"SKIPPED \[\d+\] .*test_sample\.py:(\d+)", line):
            outcomes[f"line {match[1]}"] = "SKIPPED"
    return outcomes


def test_under_ci_a_skip_fails_unless_the_test_needs_external_data(tmp_path: Path) -> None:
    outcomes = run_suite(tmp_path, ci="true")
    assert outcomes == {"test_skips": "FAILED", "test_skipif": "ERROR", "line 11": "SKIPPED",
                        "test_known": "XFAIL", "test_passes": "PASSED"}, outcomes


def test_outside_ci_a_skip_is_a_skip(tmp_path: Path) -> None:
    outcomes = run_suite(tmp_path, ci=None)
    assert list(outcomes.values()).count("SKIPPED") == 3 and outcomes["test_passes"] == "PASSED", outcomes
