"""Gates from the tools labs use: a FlowJo 10 workspace (.wsp) or a GatingML 2.0 document (.xml).

FlowKit (GatingML 2.0-compliant, reads FlowJo 10 workspaces) parses the file and gates each
sample: its compensation (the FCS file's spillover, or the workspace's or the document's matrix),
its transforms per channel (linear, log, logicle, biex, arcsinh, hyperlog) and every gate type
(rectangle and range with half-open bounds, polygon, ellipse, quadrant, boolean, ratio), over the
whole population tree. FlowKit is imported only when a run names a gating file.

Samples of a workspace are matched to FCS files by name (exactly, then ignoring case, then
without the extension); a GatingML document applies to every file. A file with no matching
sample, or whose gates cannot be applied (a channel it lacks), fails alone with a message that
says so (`GatingError`, an FcsError: the pipeline records it per file and goes on).

Populations are named by their path below the root, "Lymphocytes/CD4+"; the root is "all".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from container.cytometry import flowkit_events
from container.cytometry.fcs import FcsError, Sample
from container.cytometry.gating import Gating, Population
from container.cytometry.params import ROOT
from container.pipelines import batch_file_name

WORKSPACE, GATINGML = "workspace", "gatingml"


class GatingFileError(ValueError):
    """The gating file itself cannot be used (the whole run fails with this message)."""


class GatingError(FcsError):
    """One FCS file cannot be gated with the gating file (that file fails, the others go on)."""


@dataclass(frozen=True)
class GatingFile:
    path: Path
    kind: str  # WORKSPACE | GATINGML
    strategies: dict[str, Any]  # sample id -> flowkit GatingStrategy ("" for a GatingML document)
    matrices: dict[str, Any] = field(default_factory=dict)  # sample id -> flowkit Matrix (workspace)
    group: str | None = None

    @property
    def label(self) -> str:
        return self.path.name


def load(path: Path, group: str | None = None, named: str | None = None) -> GatingFile:
    """Parse the gating file at `path`, which the parameters call `named` (`panel.wsp`, `../panel.wsp`)."""
    import flowkit as fk

    named = named or path.name
    if not path.is_file():
        folder = "batch" if batch_file_name(named) is not None else "analysis"
        raise GatingFileError(f"gating_file {named!r} is not in the {folder} folder")
    suffix = path.suffix.lower()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if suffix == ".xml":
                if group is not None:
                    raise GatingFileError("sample_group applies to a FlowJo workspace (.wsp), not to GatingML")
                return GatingFile(path, GATINGML, {"": fk.parse_gating_xml(str(path))})
            data = fk.parse_wsp(str(path))
    except GatingFileError:
        raise
    except Exception as exc:  # FlowKit raises many kinds for a malformed document
        kind = "GatingML 2.0 document" if suffix == ".xml" else "FlowJo workspace"
        raise GatingFileError(f"{path.name} is not a usable {kind}: {type(exc).__name__}: {exc}") from None
    samples: dict[str, Any] = data["samples"]
    if group is not None:
        groups = data["groups"]
        if group not in groups:
            raise GatingFileError(
                f"sample_group {group!r} is not in {path.name}; its groups: {', '.join(map(repr, groups))}"
            )
        wanted = set(groups[group]["samples"])
        samples = {k: v for k, v in samples.items() if k in wanted}
    if not samples:
        raise GatingFileError(f"{path.name} holds no samples with gates" + (f" in group {group!r}" if group else ""))
    strategies = {sid: sd["gating_strategy"] for sid, sd in samples.items()}
    matrices = {sid: sd["compensation"] for sid, sd in samples.items() if sd.get("compensation") is not None}
    return GatingFile(path, WORKSPACE, strategies, matrices, group)


def match(gf: GatingFile, file_name: str) -> str:
    """The workspace sample id for an FCS file's name (its path in the analysis folder)."""
    if gf.kind == GATINGML:
        return ""
    base = Path(file_name).name
    ids = list(gf.strategies)
    for key in (lambda s: s, lambda s: s.casefold(), lambda s: Path(s).stem.casefold()):
        hits = [sid for sid in ids if key(sid) == key(base)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise GatingError(f"{base} matches several samples of {gf.label}: {', '.join(hits)}")
    where = f" (group {gf.group!r})" if gf.group else ""
    shown = ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "")
    raise GatingError(f"no sample named {base} in {gf.label}{where}; its samples: {shown}")


def apply(gf: GatingFile, path: Path, sample: Sample, file_name: str) -> Gating:
    """Gate one file with FlowKit: every population of the tree, as event masks over `sample`."""
    import flowkit as fk

    sid = match(gf, file_name)
    strategy = gf.strategies[sid]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fk_sample = fk.Sample(
                str(path), sample_id=sid or path.name, use_flowjo_labels=gf.kind == WORKSPACE, subsample=0
            )
        except Exception as exc:
            raise GatingError(f"FlowKit cannot read the file: {type(exc).__name__}: {exc}") from None
        _check_same_events(fk_sample, sample)
        try:
            results = flowkit_events.gate_sample(strategy, fk_sample)  # FlowKit's gating, events prepared once
        except Exception as exc:
            raise GatingError(f"the gates of {gf.label} cannot be applied: {type(exc).__name__}: {exc}") from None
    gating = Gating([Population(ROOT, "", None, sample.n_events)])
    report = results.report.sort_values(["level"], kind="stable")
    for row in report.itertuples(index=False):
        gate_path = tuple(row.gate_path)
        mask = np.asarray(results.get_gate_membership(row.gate_name, gate_path=gate_path), dtype=bool)
        parent = "/".join(gate_path[1:]) or ROOT
        name = "/".join((*gate_path[1:], row.gate_name))
        gating.populations.append(Population(name, parent, mask, int(np.count_nonzero(mask))))
    gating.method["gating_file"] = {"file": gf.label, "kind": gf.kind, "sample": sid or None}
    for pop in gating.populations[1:]:
        if pop.count == 0:
            gating.empty_gates.append(pop.name)
    return gating


def _check_same_events(fk_sample: Any, sample: Sample) -> None:
    """FlowKit decodes the file with FlowIO: refuse to gate when it reads other numbers than this reader
    (e.g. FCS 3.2 per-channel data types, which FlowIO does not decode), never gate wrong values."""
    if fk_sample.event_count != sample.n_events:
        raise GatingError(f"FlowKit reads {fk_sample.event_count} events, this reader {sample.n_events}; not gated")
    step = max(1, sample.n_events // 10_000)
    theirs = np.asarray(fk_sample.get_events(source="raw"))[::step].T
    ours = sample.events[:, ::step]
    if theirs.shape != ours.shape:
        raise GatingError(f"FlowKit reads {theirs.shape[0]} channels, this reader {ours.shape[0]}; not gated")
    for ch in sample.channels:
        if not np.allclose(theirs[ch.index], ours[ch.index], rtol=1e-6, atol=1e-6, equal_nan=True):
            raise GatingError(
                f"FlowKit reads other values than this reader in channel {ch.name} (a data layout FlowIO "
                "does not decode, such as FCS 3.2 per-channel data types); not gated"
            )


def compensation(gf: GatingFile, file_name: str) -> tuple[list[str], np.ndarray] | None:
    """(detector names, spillover matrix) the workspace gives this sample, or None (use the file's)."""
    if gf.kind != WORKSPACE:
        return None
    matrix = gf.matrices.get(match(gf, file_name))
    if matrix is None or not hasattr(matrix, "matrix"):
        return None
    return list(matrix.detectors), np.asarray(matrix.matrix, dtype=np.float64)
