"""The wordcount pipeline, checked against the real `LC_ALL=C wc` of this machine."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from container.pipelines import ParameterError, PipelineContext, PipelineError
from container.pipelines.wordcount import WordCounter, count_bytes, count_file, run

pytestmark = pytest.mark.skipif(shutil.which("wc") is None, reason="needs GNU wc")

C_LOCALE = {"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def wc_bytes(data: bytes) -> tuple[int, int, int]:
    out = subprocess.run(["wc"], input=data, env=C_LOCALE, capture_output=True, check=True).stdout
    lines, words, size = (int(field) for field in out.split())
    return lines, words, size


def wc_file(path: Path) -> tuple[int, int, int]:
    out = subprocess.run(["wc", "--", str(path)], env=C_LOCALE, capture_output=True, check=True).stdout
    lines, words, size = (int(field) for field in out.split()[:3])
    return lines, words, size


def as_tuple(counts: Any) -> tuple[int, int, int]:
    return counts.lines, counts.words, counts.bytes


def chunked(data: bytes, size: int) -> tuple[int, int, int]:
    counter = WordCounter()
    for start in range(0, len(data), size):
        counter.feed(data[start : start + size])
    return as_tuple(counter.counts())


# -- counting -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", (0, 0, 0)),
        (b"hello world\n", (1, 2, 12)),
        (b"no newline", (0, 2, 10)),
        (b"a\x00b", (0, 1, 3)),  # NUL neither starts nor ends a word
        (b"\x80\xff\x01", (0, 0, 3)),  # nor do bytes >= 0x80 or control characters
        (b"\x80a\x80 \x80b", (0, 2, 6)),
        (b"a\vb\fc\rd\te f\ng", (1, 7, 13)),  # the six separators
        (b"a\x1cb\x1dc\x1ed\x1ff", (0, 1, 9)),  # Python's str.split() would split here; wc does not
        (b"\n\n\n", (3, 0, 3)),
    ],
)
def test_counts_match_wc_on_edge_cases(data: bytes, expected: tuple[int, int, int]) -> None:
    assert as_tuple(count_bytes(data)) == expected
    assert wc_bytes(data) == expected


def test_counts_match_wc_on_random_binary_data() -> None:
    rng = random.Random(20240102)
    tricky = b" \n\r\f\t\v\x00\x1b\x7f\x80\xa0\xffaZ~!"
    for _ in range(150):
        size = rng.randrange(0, 4000)
        uniform = rng.random() < 0.5
        data = rng.randbytes(size) if uniform else bytes(rng.choice(tricky) for _ in range(size))
        expected = wc_bytes(data)
        assert as_tuple(count_bytes(data)) == expected, data
        assert chunked(data, rng.randrange(1, 9)) == expected, data


def test_a_word_across_chunks_counts_once() -> None:
    data = b"abc\x80def ghi\x00\x00jkl"
    for size in range(1, len(data) + 1):
        assert chunked(data, size) == (0, 2, len(data))


def test_count_file_in_small_and_default_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    rng = random.Random(7)
    path.write_bytes(rng.randbytes(3 * (1 << 20) + 12345))  # several default-size chunks
    expected = wc_file(path)
    assert as_tuple(count_file(path)) == expected
    assert as_tuple(count_file(path, chunk_size=4093)) == expected


# -- the pipeline -------------------------------------------------------------------------------


def context(tmp_path: Path, params: Mapping[str, Any] | None = None) -> PipelineContext:
    return PipelineContext(
        input_dir=tmp_path / "in",
        output_dir=tmp_path / "out",
        params=params or {},
        log=logging.getLogger("test.wordcount"),
        analysis="A1",
    )


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    write(folder / "b.txt", b"two words\n")
    write(folder / "a.txt", b"hello\nworld \x80\x00 again\n")
    write(folder / "sub" / "c.bin", random.Random(3).randbytes(2000))
    write(folder / ".hidden", b"not counted")
    write(folder / ".git" / "config", b"not counted")
    return folder


def output(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "out" / "wordcount.json").read_text())


def test_run_counts_every_file_like_wc(tmp_path: Path, folder: Path) -> None:
    write(folder / "params.json", b"{}")

    summary = run(context(tmp_path))

    report = output(tmp_path)
    assert [f["path"] for f in report["files"]] == ["a.txt", "b.txt", "sub/c.bin"]
    for entry in report["files"]:
        assert (entry["lines"], entry["words"], entry["bytes"]) == wc_file(folder / entry["path"])
    totals = {key: sum(f[key] for f in report["files"]) for key in ("lines", "words", "bytes")}
    assert report["totals"] == totals
    assert summary == {"files": 3, **totals}


def test_params_json_overrides_run_params(tmp_path: Path, folder: Path) -> None:
    write(folder / "params.json", json.dumps({"files": ["sub/c.bin", "a.txt"]}).encode())
    run(context(tmp_path, {"files": ["b.txt"]}))
    assert [f["path"] for f in output(tmp_path)["files"]] == ["sub/c.bin", "a.txt"]


def test_run_params_are_the_defaults(tmp_path: Path, folder: Path) -> None:
    run(context(tmp_path, {"files": ["b.txt"]}))
    assert [f["path"] for f in output(tmp_path)["files"]] == ["b.txt"]


def test_a_named_file_that_is_missing(tmp_path: Path, folder: Path) -> None:
    write(folder / "params.json", b'{"files": ["sample.txt"]}')
    with pytest.raises(ParameterError) as caught:
        run(context(tmp_path))
    assert str(caught.value) == (
        'params.json names "sample.txt", which is not in the analysis folder '
        "(found: a.txt, b.txt, sub/c.bin)"
    )


@pytest.mark.parametrize(
    ("params_json", "run_params", "message"),
    [
        (b'{"file": ["a.txt"]}', {}, r"^params\.json: unknown parameter 'file' \(did you mean 'files'\?\)$"),
        (None, {"colour": "red"}, "^unknown parameter 'colour'; known: files$"),
        (b'{"files": "a.txt"}', {}, "'files' must be a list"),
        (b'{"files": []}', {}, "'files' is empty"),
        (b"{not json", {}, "params.json is not valid JSON"),
        (b"[1, 2]", {}, "params.json must hold a JSON object"),
    ],
)
def test_bad_parameters(
    tmp_path: Path, folder: Path, params_json: bytes | None, run_params: dict[str, Any], message: str
) -> None:
    if params_json is not None:
        write(folder / "params.json", params_json)
    with pytest.raises(ParameterError, match=message):
        run(context(tmp_path, run_params))


def test_nothing_to_count(tmp_path: Path) -> None:
    write(tmp_path / "in" / "params.json", b"{}")
    write(tmp_path / "in" / ".DS_Store", b"x")
    with pytest.raises(PipelineError, match="nothing to count: the analysis folder has no files") as caught:
        run(context(tmp_path))
    assert not isinstance(caught.value, ParameterError)
