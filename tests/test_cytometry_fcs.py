"""FCS reading against FlowIO's own decoding, on real instrument files and on written ones."""

from __future__ import annotations

import warnings
from pathlib import Path

import flowio
import numpy as np
import pytest
from flowutils import compensate as fu_compensate

from container.cytometry import fcs, transforms
from tests.fcs_data import fcsparser_files_or_skip, write_fcs


@pytest.fixture(scope="session")
def real_files() -> list[Path]:
    return fcsparser_files_or_skip()


def test_decoding_matches_flowio_as_array(real_files: list[Path]) -> None:
    compared = 0
    for path in real_files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = flowio.FlowData(str(path), ignore_offset_error=True, nextdata_offset=0).as_array()
        except Exception:
            continue  # FlowIO cannot decode it either (24-bit, corrupt, truncated)
        sample = fcs.read(path)
        assert sample.events.shape == ref.T.shape, path.name
        np.testing.assert_allclose(sample.events, ref.T, rtol=2e-7, atol=1e-6, err_msg=path.name)
        compared += 1
    assert compared >= 10


def test_24_bit_integers_are_decoded(real_files: list[Path]) -> None:
    # FlowIO returns no events for 24-bit data; the values must still fit their 10-bit range.
    path = next(p for p in real_files if p.name == "Cytek_xP5.fcs")
    sample = fcs.read(path)
    fsc = sample.events[sample.find("FSC").index]
    assert sample.n_events == 23126
    assert fsc.min() >= 0 and fsc.max() <= 1023 and np.median(fsc) > 50


def test_truncated_file_is_an_fcs_error(tmp_path: Path) -> None:
    path = write_fcs(tmp_path / "a.fcs", np.ones((100, 2)), ["FSC-A", "SSC-A"])
    data = path.read_bytes()
    path.write_bytes(data[:-50])
    with pytest.raises(fcs.FcsError, match="ends inside its DATA segment: it was cut short"):
        fcs.read(path)


def test_compensation_matches_flowutils(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    true = rng.lognormal(7, 1, (1000, 2))
    spill = np.array([[1.0, 0.15], [0.05, 1.0]])
    observed = true @ spill
    events = np.column_stack([rng.normal(5e4, 1e3, 1000), observed])
    meta = {"spillover": "2,FL1-A,FL2-A,1,0.15,0.05,1"}
    sample = fcs.read(write_fcs(tmp_path / "c.fcs", events, ["FSC-A", "FL1-A", "FL2-A"], meta))
    assert transforms.compensate(sample) == ["FL1-A", "FL2-A"]
    ref = fu_compensate.compensate(events.astype(np.float32).astype(np.float64), spill, [1, 2])
    np.testing.assert_allclose(sample.events, ref.T, rtol=1e-4)
    np.testing.assert_allclose(sample.events[1:], true.T, rtol=1e-4)


@pytest.mark.parametrize("order", ["FL1-A,FL3-A,FL2-A", "FL3-A,FL1-A"])
def test_compensation_of_scattered_channels_matches_flowutils(tmp_path: Path, order: str) -> None:
    names = order.split(",")
    k = len(names)
    rng = np.random.default_rng(8)
    spill = np.eye(k) + rng.uniform(0, 0.2, (k, k)) * (1 - np.eye(k))
    events = rng.lognormal(7, 1, (20_000, 4))  # FSC-A, FL1-A, FL2-A, FL3-A; more than one block
    meta = {"spillover": f"{k},{order}," + ",".join(f"{x:.6f}" for x in spill.ravel())}
    path = write_fcs(tmp_path / "c.fcs", events, ["FSC-A", "FL1-A", "FL2-A", "FL3-A"], meta)
    sample = fcs.read(path)
    observed = sample.events.astype(np.float64)
    assert transforms.compensate(sample) == names
    cols = [1 + ["FL1-A", "FL2-A", "FL3-A"].index(n) for n in names]
    spill = np.array([float(x) for x in meta["spillover"].split(",")[k + 1 :]]).reshape(k, k)
    ref = fu_compensate.compensate(observed.T, spill, cols).T
    # float32 products and sums: each output is within a few float32 roundings of the sum of
    # the absolute terms (cancellation makes a relative bound on the result itself meaningless)
    unmix = np.abs(np.linalg.inv(spill).T)
    scale = np.zeros_like(observed)
    scale[cols] = unmix @ np.abs(observed[cols])
    assert np.all(np.abs(sample.events - ref) <= 4 * k * np.finfo(np.float32).eps * scale)
    np.testing.assert_array_equal(sample.events[[0]], observed[[0]].astype(np.float32))  # untouched
