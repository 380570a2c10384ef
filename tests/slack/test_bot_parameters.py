"""`/cyto run` with parameters the pipeline refuses: the asker alone is told why (an ephemeral answer
through response_url), nothing is posted to the channel and no run is recorded (issue 12, case 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from slack_harness import DATE, USER, Served, make_batch, wait_for

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("pipeline", "content", "message"), [
    ("wordcount", json.dumps({"flies": ["sample.txt"]}),
     "A02/params.json: unknown parameter 'flies' (did you mean 'files'?)"),
    ("cytometry", json.dumps({"transfrom": "arcsinh"}),
     "A02/params.json: unknown parameter 'transfrom' (did you mean 'transform'?)"),
    ("wordcount", '{"files": [sample.txt]}', "A02/params.json is not valid JSON"),
])
def test_params_json_the_pipeline_refuses_is_answered_only_to_the_asker(
        served: Served, store: Path, pipeline: str, content: str, message: str) -> None:
    make_batch(store, "batch-7", 3)
    (store / "Input" / DATE / "batch-7" / "A02" / "params.json").write_text(content)
    status, _ = served.command(f"run {DATE} batch-7 pipeline={pipeline}")
    assert status == 200
    [answer] = wait_for(lambda: served.stand_in.calls_to("respond"), what="ephemeral answer")
    assert answer.path.endswith(f"/{USER}") and answer.params["response_type"] == "ephemeral"
    assert message in answer.params["text"]
    # The answer is the handler's last act: a run it had started would have been posted before it.
    assert served.stand_in.count("chat.postMessage") == 0 and served.stand_in.count("chat.update") == 0
    assert len(served.stand_in.calls_to("respond")) == 1
    assert served.bot.cyto.engine.db.runs(5) == []
