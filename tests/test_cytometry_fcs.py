"""FCS reading against FlowIO's own decoding, on real instrument files and on written ones."""

from __future__ import annotations

import warnings
from pathlib import Path

import flowio
import numpy as np
import pytest
from flowutils import compensate as fu_compensate

from container.cytometry import fcs, transforms
from tests.fcs_data import fcsparser_files, write_fcs


@pytest.fixture(scope="session")
def real_files() -> list[Path]:
    try:
        return fcsparser_files()
    except Exception as exc:  # no network: say so instead of failing
        pytest.skip(f"fcsparser test data unavailable: {exc}")


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
    with pytest.raises(fcs.FcsError, match="greater than file size"):
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
