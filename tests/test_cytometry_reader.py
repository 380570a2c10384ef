"""The FCS reader never returns wrong numbers silently: purpose-built files, byte by byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from container.cytometry import fcs
from tests.fcs_data import build_fcs, channel_keywords, fcsparser_files_or_skip, write_fcs


@pytest.fixture(scope="session")
def real_files() -> list[Path]:
    return fcsparser_files_or_skip()


BASE = {"$BYTEORD": "1,2,3,4", "$MODE": "L", "$NEXTDATA": "0"}


def mixed_file(path: Path, n: int = 5, header_data_offsets: bool = True) -> tuple[Path, np.ndarray]:
    """FCS 3.2: $DATATYPE=I, but FSC-A is float32 and SSC-A float64 by $PnDATATYPE; FL1-A uint16."""
    fsc = np.linspace(79_800.5, 80_200.25, n)
    ssc = np.linspace(1.0e-3, 3.5e5, n)
    fl1 = np.arange(n, dtype=np.uint16) * 20 + 7  # inside $P2R=1024
    records = np.zeros(n, dtype=[("fsc", "<f4"), ("fl1", "<u2"), ("ssc", "<f8")])
    records["fsc"], records["fl1"], records["ssc"] = fsc, fl1, ssc
    keywords = {
        **BASE,
        "$DATATYPE": "I",
        "$TOT": str(n),
        **channel_keywords(["FSC-A", "FL1-A", "SSC-A"], [32, 16, 64], [262144, 1024, 262144]),
        "$P1DATATYPE": "F",
        "$P3DATATYPE": "D",
    }
    path = build_fcs(path, keywords, records.tobytes(), version="3.2", header_data_offsets=header_data_offsets)
    expected = np.vstack([fsc.astype(np.float32), fl1, ssc]).astype(np.float32)
    return path, expected


def test_fcs32_per_channel_datatypes_are_decoded(tmp_path: Path) -> None:
    path, expected = mixed_file(tmp_path / "mixed.fcs")
    sample = fcs.read(path)
    assert sample.version == "3.2"
    np.testing.assert_array_equal(sample.events, expected)
    assert float(np.median(sample.events[0])) == pytest.approx(80_000, rel=1e-3)  # not 1.2e9


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"$P1DATATYPE": "F", "$P1B": "16"}, r"\$P1DATATYPE=F needs \$P1B=32"),
        ({"$P3DATATYPE": "D", "$P3B": "32"}, r"\$P3DATATYPE=D needs \$P3B=64"),
        ({"$P2DATATYPE": "A"}, r"\$P2DATATYPE=A is not supported"),
    ],
)
def test_inconsistent_per_channel_datatypes_are_refused(tmp_path: Path, extra: dict[str, str], message: str) -> None:
    n = 2
    keywords = {
        **BASE,
        "$DATATYPE": "I",
        "$TOT": str(n),
        **channel_keywords(["FSC-A", "FL1-A", "SSC-A"], [32, 16, 64], [262144, 1024, 262144]),
        "$P1DATATYPE": "F",
        "$P3DATATYPE": "D",
        **extra,
    }
    widths = sum(int(keywords[f"$P{i}B"]) for i in (1, 2, 3)) // 8
    path = build_fcs(tmp_path / "bad.fcs", keywords, bytes(n * widths), version="3.2")
    with pytest.raises(fcs.FcsError, match=message):
        fcs.read(path)


def test_float_file_with_an_integer_channel(tmp_path: Path) -> None:
    # $DATATYPE=F with one $PnDATATYPE=I channel: each field has its own width and type.
    records = np.zeros(3, dtype=[("a", "<f4"), ("t", "<u4")])
    records["a"], records["t"] = [1.5, -2.25, 3e5], [10, 20, 30]
    keywords = {**BASE, "$DATATYPE": "F", "$TOT": "3", **channel_keywords(["FSC-A", "Time"], [32, 32], [262144, 1024])}
    keywords["$P2DATATYPE"] = "I"
    sample = fcs.read(build_fcs(tmp_path / "f.fcs", keywords, records.tobytes(), version="3.2"))
    np.testing.assert_array_equal(sample.events, np.array([[1.5, -2.25, 3e5], [10, 20, 30]], dtype=np.float32))


def test_blank_header_data_offsets_are_read_from_text(tmp_path: Path) -> None:
    path, expected = mixed_file(tmp_path / "blank.fcs", n=50, header_data_offsets=False)
    sample = fcs.read(path)
    np.testing.assert_array_equal(sample.events, expected)


def test_real_file_with_blank_header_offsets_reads(real_files: list[Path]) -> None:
    path = next(p for p in real_files if p.name == "fake_large_fcs.fcs")
    sample = fcs.read(path)
    assert sample.n_events == int(sample.text["tot"]) > 0
    assert np.isfinite(sample.events).all()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not an FCS file: it is empty"),
        (b"hello, world\n", "not an FCS file"),
        (b"FCS3.1    nonsense", "not an FCS file"),
        (b"%PDF-1.4 " + b"x" * 100, "not an FCS file"),
    ],
)
def test_non_fcs_content_says_so(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.fcs"
    path.write_bytes(content)
    with pytest.raises(fcs.FcsError, match=message):
        fcs.read(path)


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        (30, "not an FCS file"),  # inside the HEADER
        (58, "the file ends inside its TEXT segment: it was cut short"),  # the HEADER only
        (200, "the file ends inside its TEXT segment: it was cut short"),
        (-10, "the file ends inside its DATA segment: it was cut short"),
    ],
)
def test_cut_short_files_say_where(tmp_path: Path, keep: int, message: str) -> None:
    path = write_fcs(tmp_path / "a.fcs", np.ones((100, 2)), ["FSC-A", "SSC-A"])
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(fcs.FcsError, match=message):
        fcs.read(path)


def test_text_that_is_not_keyword_value_pairs_is_an_fcs_error(tmp_path: Path) -> None:
    body = b"no delimiters here at all......"
    header = f"FCS3.1    {58:>8}{58 + len(body) - 1:>8}{0:>8}{0:>8}{0:>8}{0:>8}".encode()
    path = tmp_path / "t.fcs"
    path.write_bytes(header + body)
    with pytest.raises(fcs.FcsError):
        fcs.read(path)


def test_missing_required_keyword_names_it(tmp_path: Path) -> None:
    keywords = {**BASE, "$DATATYPE": "F", **channel_keywords(["FSC-A"], [32], [1024])}  # no $TOT
    with pytest.raises(fcs.FcsError, match=r"\$TOT"):
        fcs.read(build_fcs(tmp_path / "m.fcs", keywords, np.ones(4, "<f4").tobytes()))
