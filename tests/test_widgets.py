"""The notebook widgets (bot/notebook) on a real local store, run database and local executor, with
the real `wordcount` pipeline run by `python -m container.entrypoint`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from bot.api import Cyto
from bot.ledger import Job
from bot.notebook import LaunchForm, RunWatcher
from bot.notebook.render import MAX_TABLE_ROWS, jobs_table_html
from bot.settings import Settings
from bot.states import JobState
from tests.timeouts import deadline_after, seconds

ROOT = Path(__file__).resolve().parent.parent
DATE, OTHER_DATE = "2018-12-05", "2018-12-06"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write(root / "Input" / DATE / "batch-7" / "A1" / "a.txt", "hello world\n")
    write(root / "Input" / DATE / "batch-7" / "A2" / "b.txt", "one two three\nfour\n")
    write(root / "Input" / DATE / "mixed" / "ok" / "a.txt", "fine\n")
    write(root / "Input" / DATE / "mixed" / "bad" / "a.txt", "x\n")
    write(root / "Input" / DATE / "mixed" / "bad" / "params.json", json.dumps({"files": ["missing.txt"]}))
    write(root / "Input" / OTHER_DATE / "plate-1" / "B1" / "c.txt", "c\n")
    write(root / "Input" / OTHER_DATE / "plate-2" / "B2" / "d.txt", "d\n")
    (root / "Input" / OTHER_DATE / "plate-empty").mkdir(parents=True)
    return root


@pytest.fixture
def cyto(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cyto:
    # The local executor's job processes import bot/ and container/ from the repository.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return Cyto(Settings(store=str(store), db=str(tmp_path / "runs.sqlite"), local_spool=str(tmp_path / "spool"),
                         default_pipeline="wordcount", poll_seconds=0.2))


def valid_form(cyto: Cyto) -> LaunchForm:
    form = LaunchForm(cyto, date=DATE, batch="batch-7", requested_by="notebook:test")
    assert form.errors == {}
    return form


# -- the launch form ----------------------------------------------------------------------------


def test_form_lists_store_dates_newest_first_choice_and_pipelines(cyto: Cyto) -> None:
    form = LaunchForm(cyto)
    values = form.values()
    assert values["date_options"] == [DATE, OTHER_DATE]
    assert values["date"] == OTHER_DATE  # the newest date
    assert values["batch_options"] == ["plate-1", "plate-2", "plate-empty"]
    assert values["batch"] == "plate-1"
    assert values["pipeline"] == "wordcount"
    assert {"wordcount", "cytometry"} <= {value for _, value in form.pipeline.options}


def test_batch_dropdown_follows_the_date(cyto: Cyto) -> None:
    form = LaunchForm(cyto, date=OTHER_DATE)
    form.date.value = DATE
    assert [v for _, v in form.batch.options] == ["batch-7", "mixed"]
    assert form.batch.value == "batch-7"
    assert form.plan is not None and form.plan.analyses == ["A1", "A2"]
    form.date.value = OTHER_DATE
    assert [v for _, v in form.batch.options] == ["plate-1", "plate-2", "plate-empty"]
    assert form.plan is not None and form.plan.analyses == ["B1"]


def test_valid_form_previews_the_analyses_and_enables_run(cyto: Cyto) -> None:
    form = valid_form(cyto)
    form.vcpus.value = 2
    form.memory_mib.value = 4096
    assert not form.run_button.disabled
    assert "2 analyses" in form.preview.value and "<code>A1</code>" in form.preview.value
    assert "4096 MiB" in form.preview.value
    assert all(box.value == "" for box in form.messages.values())
    assert cyto.runs() == []  # previewing submits nothing


@pytest.mark.parametrize(("field", "bad", "good"), [
    ("vcpus", 0.1, 0.5), ("vcpus", 1000, 4), ("memory_mib", 64, 512), ("storage_gib", 0, 50),
    ("timeout_s", 10, 600), ("retries", 10, 0), ("retries", -1, 3),
])
def test_out_of_range_resource_shows_message_next_to_it_and_disables_run(
        cyto: Cyto, field: str, bad: float, good: float) -> None:
    form = valid_form(cyto)
    getattr(form, field).value = bad
    assert set(form.errors) == {field}
    assert "out of range" in form.messages[field].value
    assert form.run_button.disabled and form.preview.value == ""
    getattr(form, field).value = good
    assert form.errors == {} and form.messages[field].value == ""
    assert not form.run_button.disabled


def test_every_bad_input_gets_its_own_message(cyto: Cyto) -> None:
    form = valid_form(cyto)
    form.memory_mib.value = 1
    form.retries.value = 99
    form.batch.value = "mixed"
    assert set(form.errors) == {"memory_mib", "retries"}
    assert form.run_button.disabled


@pytest.mark.parametrize(("text", "message"), [
    ('{"files": [', "not valid JSON"), ('["a.txt"]', "must be a JSON object"), ("42", "must be a JSON object"),
])
def test_bad_parameters_show_message_next_to_them(cyto: Cyto, text: str, message: str) -> None:
    form = valid_form(cyto)
    form.params.value = text
    assert message in form.errors["params"] and message in form.messages["params"].value
    assert form.run_button.disabled
    form.params.value = '{"files": ["a.txt"]}'
    assert form.errors == {} and form.plan is not None and form.plan.params == {"files": ["a.txt"]}
    form.params.value = "  "
    assert form.errors == {} and not form.run_button.disabled


def test_parameters_the_pipeline_refuses_keep_run_disabled_with_the_message_on_the_field(cyto: Cyto) -> None:
    form = valid_form(cyto)
    form.params.value = '{"file": ["a.txt"]}'
    assert form.errors == {"params": "unknown parameter 'file' (did you mean 'files'?)"}
    assert "did you mean" in form.messages["params"].value and form.run_button.disabled
    form.run_button.click()
    assert form.last_run is None and cyto.runs() == []
    form.pipeline.value = "cytometry"  # the same text, checked by that pipeline's own check
    assert form.errors["params"].startswith("unknown parameter 'file'; known: ")
    form.pipeline.value = "wordcount"
    form.params.value = '{"files": ["a.txt"]}'
    assert form.errors == {} and not form.run_button.disabled


def test_an_analysis_params_json_the_pipeline_refuses_is_named_on_the_parameters_field(
        cyto: Cyto, store: Path) -> None:
    form = valid_form(cyto)
    write(store / "Input" / DATE / "batch-7" / "A2" / "params.json", '{"flies": ["b.txt"]}')
    form.validate()
    assert form.errors == {"params": "A2/params.json: unknown parameter 'flies' (did you mean 'files'?)"}
    assert form.run_button.disabled and form.preview.value == ""
    write(store / "Input" / DATE / "batch-7" / "A2" / "params.json", '{"files": ["b.txt"]}')
    form.validate()
    assert form.errors == {} and not form.run_button.disabled


def test_date_that_does_not_exist_is_explained_next_to_the_date(cyto: Cyto) -> None:
    form = LaunchForm(cyto, date="2019-01-01", batch="batch-7")
    assert set(form.errors) == {"date"}
    assert "nothing on 2019-01-01" in form.errors["date"] and DATE in form.errors["date"]
    assert ("2019-01-01 (not found)", "2019-01-01") in form.date.options
    assert form.run_button.disabled
    form.date.value = DATE  # choosing a real date repairs the form
    assert form.errors == {} and not form.run_button.disabled


def test_date_alone_that_does_not_exist_names_the_nearest_dates(cyto: Cyto) -> None:
    form = LaunchForm(cyto, date="2018-12-30")
    assert form.batch.value is None and set(form.errors) == {"date"}
    assert f"nearest dates: {OTHER_DATE}, {DATE}" in form.errors["date"] and form.run_button.disabled


def test_malformed_date_is_explained_next_to_the_date(cyto: Cyto) -> None:
    form = LaunchForm(cyto, date="05/12/2018")
    assert "YYYY-MM-DD" in form.errors["date"] and form.run_button.disabled


@pytest.mark.parametrize(("batch", "message"), [
    ("batch-8", "batches on that date: batch-7"), ("plate-empty", "has no analyses"),
])
def test_batch_that_does_not_exist_or_is_empty_is_explained_next_to_the_batch(
        cyto: Cyto, batch: str, message: str) -> None:
    date = OTHER_DATE if batch == "plate-empty" else DATE
    form = LaunchForm(cyto, date=date, batch=batch)
    assert set(form.errors) == {"batch"} and message in form.messages["batch"].value
    assert form.run_button.disabled


def test_empty_store_says_so_next_to_the_date(tmp_path: Path) -> None:
    cyto = Cyto(Settings(store=str(tmp_path / "empty"), db=str(tmp_path / "r.sqlite"),
                         local_spool=str(tmp_path / "spool"), default_pipeline="wordcount"))
    form = LaunchForm(cyto)
    assert "no dates in the store" in form.errors["date"] and form.run_button.disabled


def test_reload_picks_up_new_dates_and_keeps_the_selection(cyto: Cyto, store: Path) -> None:
    form = valid_form(cyto)
    write(store / "Input" / "2018-12-07" / "new" / "N1" / "n.txt", "n\n")
    form.reload()
    assert "2018-12-07" in [v for _, v in form.date.options]
    assert (form.date.value, form.batch.value) == (DATE, "batch-7")


def test_run_click_on_an_invalid_form_starts_nothing(cyto: Cyto) -> None:
    form = valid_form(cyto)
    form.storage_gib.value = 0
    form.run_button.click()
    assert form.last_run is None and cyto.runs() == []


@pytest.mark.slow
def test_run_button_starts_a_real_run_that_the_watcher_follows_to_the_end(cyto: Cyto, store: Path) -> None:
    form = valid_form(cyto)
    form.memory_mib.value = 1024
    watcher = RunWatcher(cyto, interval=0.1)
    assert watcher.run_id is None and "no runs yet" in watcher.message.value
    form.on_run(watcher.follow)

    form.run_button.click()

    run = form.last_run
    assert run is not None and run.requested_by == "notebook:test"
    assert run.resources["memory_mib"] == 1024 and run.pipeline == "wordcount"
    assert form.run_button.disabled, "a second click must not start the same run again"
    assert f"started run {run.id}" in form.status.value
    assert watcher.run_id == run.id and watcher.live and watcher.message.value == ""

    summary = watcher.wait(timeout=seconds(30))
    watcher.stop()
    assert summary is not None and summary.run.state.value == "SUCCEEDED"
    assert watcher.values()["progress"] == [2, 2]
    assert watcher.progress.bar_style == "success"
    assert watcher.table.value.count("succeeded") == 2
    assert "INFO succeeded" in watcher.log.value
    assert watcher.retry_button.disabled and watcher.cancel_button.disabled
    counts = json.loads((store / "Output" / DATE / "batch-7" / "A2" / "wordcount.json").read_text())["totals"]
    assert (counts["lines"], counts["words"]) == (2, 4)

    form.retries.value = 1  # any change allows another run
    assert not form.run_button.disabled


# -- the run watcher ----------------------------------------------------------------------------


@pytest.mark.slow
def test_watcher_shows_the_failed_analysis_log_and_retries_it(cyto: Cyto) -> None:
    run = cyto.run(DATE, "mixed", pipeline="wordcount", retries=0)
    watcher = RunWatcher(cyto, run.id, interval=0.1)
    assert watcher.values()["analyses"] == {"bad": "QUEUED", "ok": "QUEUED"}
    assert watcher.retry_button.disabled and not watcher.cancel_button.disabled

    summary = watcher.wait(timeout=seconds(30))
    assert summary is not None and summary.run.state.value == "FAILED"
    assert watcher.progress.bar_style == "danger"
    assert watcher.analysis.value == "bad"  # the failed analysis's log is shown first
    assert "ERROR" in watcher.log.value and "missing.txt" in watcher.log.value
    assert "missing.txt" in watcher.table.value  # the reason, in the table
    assert not watcher.retry_button.disabled

    watcher.retry_button.click()
    assert "retrying 1 analyses: bad" in watcher.message.value
    assert watcher.values()["state"] == "ACTIVE"
    summary = watcher.wait(timeout=seconds(30))
    assert summary is not None and summary.run.state.value == "FAILED"
    assert {j.analysis: j.attempt for j in cyto.jobs(run.id)} == {"bad": 2, "ok": 1}
    assert "attempt 2" in watcher.log.value

    watcher.show_log("ok")
    assert "INFO succeeded" in watcher.log.value


@pytest.mark.slow
def test_cancel_asks_for_confirmation_then_cancels(cyto: Cyto) -> None:
    run = cyto.run(DATE, "batch-7", pipeline="wordcount")  # queued: jobs start on the first poll
    watcher = RunWatcher(cyto, run.id)
    watcher.cancel_button.click()
    assert watcher.cancel_button.description == "Confirm cancel"
    assert "click again" in watcher.message.value
    assert cyto.status(run.id).run.state.value == "ACTIVE"

    watcher.cancel_button.click()
    summary = watcher.wait(timeout=seconds(30))
    assert summary is not None and summary.run.state.value == "CANCELLED"
    assert summary.run.cancel_requested_by == watcher.by
    assert watcher.cancel_button.disabled and watcher.cancel_button.description == "Cancel run"


@pytest.mark.slow
def test_live_refresh_updates_the_widgets_in_the_background(cyto: Cyto) -> None:
    run = cyto.run(DATE, "batch-7", pipeline="wordcount")
    watcher = RunWatcher(cyto, run.id)
    watcher.start(interval=0.1)
    deadline = deadline_after(30)
    while watcher.progress.value < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    watcher.stop()
    assert not watcher.live
    assert watcher.values()["state"] == "SUCCEEDED" and watcher.values()["progress"] == [2, 2]


def test_watcher_picks_the_newest_run_and_reports_an_unknown_one(cyto: Cyto) -> None:
    first = cyto.engine.start_run(cyto.plan(DATE, "batch-7"), "t", submit=False)
    time.sleep(0.01)
    second = cyto.engine.start_run(cyto.plan(OTHER_DATE, "plate-1"), "t", submit=False)
    assert RunWatcher(cyto).run_id == second.id
    assert RunWatcher(cyto, first.id).run_id == first.id
    watcher = RunWatcher(cyto, "nope00")
    assert "no run &#x27;nope00&#x27;" in watcher.message.value and watcher.run_id == second.id


def test_jobs_table_escapes_names_groups_by_state_and_stays_short() -> None:
    def job(i: int, name: str, state: JobState) -> Job:
        return Job(i, "r", name, state, 1, 3, "<b>boom</b>" if state == JobState.FAILED else None, None, 0.0, None)

    html = jobs_table_html([job(1, "z<script>", JobState.SUCCEEDED), job(2, "a", JobState.FAILED),
                            job(3, "m", JobState.RUNNING)], {"a": 1.5})
    assert "<script>" not in html and "z&lt;script&gt;" in html and "&lt;b&gt;boom" in html
    assert html.index(">m<") < html.index("z&lt;") < html.index(">a<")  # running, succeeded, failed
    assert "1.5 s" in html
    many = jobs_table_html([job(i, f"x{i:04d}", JobState.QUEUED) for i in range(MAX_TABLE_ROWS + 5)], {})
    assert "… and 5 more analyses" in many


def test_refresh_error_is_shown_in_the_widget_and_cleared_when_it_passes(
        cyto: Cyto, monkeypatch: pytest.MonkeyPatch) -> None:
    run = cyto.run(DATE, "batch-7")
    watcher = RunWatcher(cyto, run.id)
    real_poll, broken = cyto.poll, [True]

    def flaky_poll() -> None:
        if broken[0]:
            raise RuntimeError("executor unreachable")
        real_poll()

    monkeypatch.setattr(cyto, "poll", flaky_poll)
    watcher.refresh()
    assert "could not refresh: executor unreachable" in watcher.message.value
    broken[0] = False
    watcher.refresh()
    assert watcher.message.value == ""
    summary = watcher.wait(timeout=seconds(30))
    assert summary is not None and summary.run.state.value == "SUCCEEDED"


def test_wait_runs_on_the_watchers_clock_and_stops_at_its_timeout(
        cyto: Cyto, monkeypatch: pytest.MonkeyPatch) -> None:
    run = cyto.run(DATE, "batch-7", pipeline="wordcount")
    monkeypatch.setattr(cyto, "poll", lambda: None)  # nothing moves the run on: only the clock decides
    now, slept = [0.0], []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    watcher = RunWatcher(cyto, run.id, interval=2.0, clock=lambda: now[0], sleep=sleep)
    on_the_fake_clock = 10.0  # seconds of the injected clock: no real time passes, nothing to scale
    summary = watcher.wait(timeout=on_the_fake_clock)

    assert summary is not None and not summary.finished
    assert slept == [2.0] * 5
    assert watcher.values()["state"] == "ACTIVE" and watcher.values()["analyses"] == {"A1": "QUEUED", "A2": "QUEUED"}
    cyto.cancel(run.id, by="test")


@pytest.mark.slow
def test_the_live_loop_follows_the_run_picked_next(cyto: Cyto) -> None:
    first = cyto.run(DATE, "batch-7", pipeline="wordcount")
    watcher = RunWatcher(cyto, first.id)
    watcher.start(interval=0.1)
    second = cyto.run(DATE, "mixed", pipeline="wordcount", retries=0)
    watcher.load_runs(second.id)
    deadline = deadline_after(30)
    while watcher.values()["state"] != "FAILED" and time.monotonic() < deadline:
        time.sleep(0.05)
    watcher.stop()
    assert watcher.run_id == second.id and watcher.values()["state"] == "FAILED"
    assert watcher.values()["analyses"] == {"bad": "FAILED", "ok": "SUCCEEDED"}
