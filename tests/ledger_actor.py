"""One process acting on a shared run ledger, for the two-process race tests:
`python -m tests.ledger_actor ACTION RUN_ID` with the CYTO_* environment of the test.

ACTION is poll (poll until the run finishes or 60 s pass), cancel, or retry-all. It prints one JSON
line with what it did, so the test can check the outcome against the ledger."""

from __future__ import annotations

import json
import sys
import time

from bot.api import Cyto
from bot.engine import EngineError
from tests.timeouts import deadline_after


def main(action: str, run_id: str) -> None:
    cyto = Cyto.from_env()
    result: object = None
    if action == "poll":
        deadline = deadline_after(60)
        polls = 0
        while time.monotonic() < deadline and not cyto.engine.get_run(run_id).state.is_finished:
            cyto.poll()
            polls += 1
            time.sleep(0.05)
        result = polls
    elif action == "cancel":
        result = cyto.cancel(run_id, by="carol")
    elif action == "retry-all":
        try:
            result = cyto.retry(run_id, None, by="bob")
        except EngineError as exc:
            result = str(exc)
    print(json.dumps({"action": action, "result": result}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
