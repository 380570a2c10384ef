"""Every deadline in the tests, scaled by one setting.

`CYTO_TEST_TIMEOUT_SCALE` (a positive number, default 1) multiplies each wait, deadline and timeout
the tests set: how long a test waits for a run to finish, a server to answer, a subprocess to exit,
and pytest-timeout's limit per test. A slow or busy machine sets it to 2 or 3 rather than editing
numbers; nothing ever waits less than its base value at scale 1. The numbers written in the tests are
what a 2-core machine needs at scale 1.

Helpers that take a `timeout` take it already scaled: a literal is wrapped in `seconds()` where it
is written, so tests/test_timeouts.py can check that no bare number is left.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

ENV = "CYTO_TEST_TIMEOUT_SCALE"


def scale_from(environ: Mapping[str, str]) -> float:
    raw = environ.get(ENV, "").strip() or "1"
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{ENV}={raw!r} is not a number (it multiplies every test timeout; default 1)") from None
    if not value > 0:
        raise ValueError(f"{ENV}={raw!r} must be above 0 (it multiplies every test timeout; default 1)")
    return value


SCALE = scale_from(os.environ)


def seconds(base: float) -> float:
    """`base` seconds of patience, scaled by CYTO_TEST_TIMEOUT_SCALE."""
    return base * SCALE


def deadline_after(base: float) -> float:
    """A `time.monotonic()` instant `base` seconds (scaled) from now."""
    return time.monotonic() + seconds(base)
