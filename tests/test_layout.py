from __future__ import annotations

import pytest

from bot import catalog
from bot.layout import BatchRef, LayoutError, check_name, nearest_dates, parse_date
from bot.store.local import LocalStore


@pytest.mark.parametrize("date", ["2018-12-05", "2020-02-29", "2000-01-01"])
def test_real_dates_pass(date: str) -> None:
    assert parse_date(date) == date


@pytest.mark.parametrize(("date", "message"), [
    ("2018-13-01", "not a real calendar date"),
    ("2019-02-29", "not a real calendar date"),
    ("2018-12-5", "YYYY-MM-DD"),
    ("05-12-2018", "YYYY-MM-DD"),
    ("", "YYYY-MM-DD"),
    ("2018-12-05/..", "YYYY-MM-DD"),
])
def test_bad_dates_are_refused_with_the_reason(date: str, message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        parse_date(date)


@pytest.mark.parametrize(("name", "message"), [
    ("..", "not allowed"),
    (".", "not allowed"),
    ("a/b", "must not contain"),
    ("a\\b", "must not contain"),
    ("", "empty"),
    ("   ", "empty"),
    ("tab\there", "control characters"),
    ("nul\x00", "control characters"),
    ("new\nline", "control characters"),
    (" padded", "spaces"),
    ("x" * 201, "at most 200"),
])
def test_names_that_could_escape_or_break_are_refused(name: str, message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        check_name(name, "batch name")


def test_prefixes_follow_the_layout() -> None:
    ref = BatchRef("2018-12-05", "batch-7")
    a = ref.analysis("A01 donor 3")
    assert a.input_prefix == "Input/2018-12-05/batch-7/A01 donor 3/"
    assert a.output_prefix == "Output/2018-12-05/batch-7/A01 donor 3/"
    assert a.logs_prefix == "Logs/2018-12-05/batch-7/A01 donor 3/"
    with pytest.raises(LayoutError):
        ref.analysis("../../Output")


def test_files_belong_to_a_run() -> None:
    a = BatchRef("2018-12-05", "batch-7").analysis("A01")
    assert a.run_logs_prefix("3fa2c1") == "Logs/2018-12-05/batch-7/A01/3fa2c1/"
    assert a.attempt_log_key("3fa2c1", 2) == "Logs/2018-12-05/batch-7/A01/3fa2c1/attempt-2.log"
    scoped = BatchRef("2018-12-05", "batch-7", output_run="3fa2c1").analysis("A01")
    assert scoped.output_prefix == "Output/2018-12-05/batch-7.run-3fa2c1/A01/"
    assert (scoped.input_prefix, scoped.logs_prefix) == (a.input_prefix, a.logs_prefix)
    with pytest.raises(LayoutError):
        a.run_logs_prefix("../x")


def test_nearest_dates_are_ordered_by_distance() -> None:
    assert nearest_dates("2018-12-05", ["2018-11-01", "2018-12-07", "2018-12-04", "bogus"]) == [
        "2018-12-04", "2018-12-07", "2018-11-01"]


def _touch(store: LocalStore, key: str) -> None:
    store.write_bytes(key, b"x")


def test_unknown_batch_names_the_nearest_batches_of_that_date(tmp_path) -> None:
    store = LocalStore(tmp_path)
    for batch in ("batch-7", "batch-8", "controls"):
        _touch(store, f"Input/2018-12-05/{batch}/A01/a.fcs")
    with pytest.raises(catalog.UnknownBatch, match=r"no batch 'batch-9' on 2018-12-05; .*batch-7"):
        catalog.resolve_batch(store, "2018-12-05", "batch-9")


def test_unknown_date_names_the_nearest_dates(tmp_path) -> None:
    store = LocalStore(tmp_path)
    _touch(store, "Input/2018-12-04/b1/A01/a.fcs")
    _touch(store, "Input/2019-06-01/b2/A01/a.fcs")
    with pytest.raises(catalog.UnknownBatch, match=r"nothing on 2018-12-05; nearest dates: 2018-12-04 \(b1\)"):
        catalog.resolve_batch(store, "2018-12-05", "b1")


def test_batch_without_analyses_says_so(tmp_path) -> None:
    store = LocalStore(tmp_path)
    (tmp_path / "Input/2018-12-05/empty").mkdir(parents=True)
    _touch(store, "Input/2018-12-05/empty/loose-file.txt")
    with pytest.raises(catalog.UnknownBatch, match="has no analyses"):
        catalog.resolve_batch(store, "2018-12-05", "empty")


def test_empty_store_says_so(tmp_path) -> None:
    with pytest.raises(catalog.UnknownBatch, match="nothing under Input/"):
        catalog.resolve_batch(LocalStore(tmp_path), "2018-12-05", "b")


def test_analyses_stream_in_order_and_skip_hidden_folders(tmp_path) -> None:
    store = LocalStore(tmp_path)
    for name in ("B02", "A01", ".hidden", "C03"):
        (tmp_path / "Input/2018-12-05/b" / name).mkdir(parents=True)
    _ref, analyses = catalog.resolve_batch(store, "2018-12-05", "b")
    assert analyses == ["A01", "B02", "C03"]


def test_local_store_refuses_keys_outside_it(tmp_path) -> None:
    from bot.store import StoreError

    store = LocalStore(tmp_path / "s")
    with pytest.raises(StoreError, match="outside"):
        store.write_bytes("../escape.txt", b"x")
    assert not (tmp_path / "escape.txt").exists()


def test_runs_folder_is_reserved_and_run_scoped() -> None:
    from bot.layout import BatchRef, LayoutError

    ref = BatchRef("2018-12-05", "b7")
    assert ref.run_prefix("ab12cd") == "Output/2018-12-05/b7/_runs/ab12cd/"
    with pytest.raises(LayoutError, match="reserved for run reports"):
        ref.analysis("_runs")


def test_an_input_folder_named_runs_is_not_an_analysis(tmp_path) -> None:
    from bot.catalog import iter_analyses
    from bot.layout import BatchRef
    from bot.store.local import LocalStore

    for name in ("A01", "_runs"):
        (tmp_path / "Input/2018-12-05/b7" / name).mkdir(parents=True)
    assert list(iter_analyses(LocalStore(tmp_path), BatchRef("2018-12-05", "b7"))) == ["A01"]
