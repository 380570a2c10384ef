"""Parameters of the cytometry pipeline: merge, validate, and describe them.

Every problem raises ParameterError with a message that names the offending key, because the
scientist reads that message in Slack and must be able to fix params.json from it alone.
Unknown keys are rejected too: a typo such as "transfrom" would otherwise be silently ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from container.pipelines import BATCH_FOLDER, ParameterError, batch_file_name, read_params_file, unknown_parameters

ROOT = "all"
AUTO_GATES = ("cells", "singlets")
TRANSFORMS = ("logicle", "arcsinh")
GATE_TYPES = ("rectangle", "polygon")
SCALES = ("linear", "decades", "transformed")
LEGACY_SCALE = "transformed"  # what a gate without "scale" means: the old default, kept working
MAX_DECADES = 20.0  # |bound| in decades above this is a data value written under the wrong scale


@dataclass(frozen=True)
class Logicle:
    t: float | None = None  # None: the channel's own top of scale ($PnR in data units)
    w: float = 0.5
    m: float = 4.5
    a: float = 0.0


@dataclass(frozen=True)
class Gate:
    name: str
    parent: str
    type: str
    x: str
    y: str | None
    scale: str  # the gate's "scale" as written: a unit for both axes, "x/y" per axis
    x_bounds: tuple[float | None, float | None] | None = None
    y_bounds: tuple[float | None, float | None] | None = None
    vertices: tuple[tuple[float, float], ...] | None = None
    scale_named: bool = True  # False: no "scale" key, the legacy transformed unit was assumed

    @property
    def x_unit(self) -> str:
        return self.scale.split("/")[0]

    @property
    def y_unit(self) -> str | None:
        if self.y is None:
            return None
        parts = self.scale.split("/")
        return parts[-1]


@dataclass(frozen=True)
class Params:
    transform: str = "logicle"
    cofactor: float = 150.0
    logicle: Logicle = field(default_factory=Logicle)
    compensate: bool = True
    gates: tuple[Gate, ...] = ()
    min_events: int = 1000
    saturation_threshold: float = 0.01
    drift_threshold: float = 0.2
    drift_channel: str | None = None
    time_slices: int = 10
    singlet_tolerance: float = 3.0
    fsc_area: str | None = None
    fsc_height: str | None = None
    fsc_width: str | None = None
    ssc_area: str | None = None
    max_plot_points: int = 20_000
    # a FlowJo workspace (.wsp) or GatingML 2.0 document (.xml): a path in the analysis folder, or
    # "../name" for a file in the batch folder, shared by every analysis
    gating_file: str | None = None
    sample_group: str | None = None  # the workspace's sample group whose gates apply

    @property
    def batch_files(self) -> dict[str, str]:
        """The files these parameters name in the batch folder (parameter -> name), for the stager."""
        name = batch_file_name(self.gating_file or "")
        return {"gating_file": name} if name is not None else {}

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["gates"] = [_gate_json(g) for g in self.gates]
        return out


def _gate_json(gate: Gate) -> dict[str, Any]:
    """The gate as params.json would give it (so summary.json's parameters can be used again)."""
    out: dict[str, Any] = {"name": gate.name, "parent": gate.parent, "type": gate.type, "x": gate.x}
    if gate.y is not None:
        out["y"] = gate.y
    # per-axis units are written back as they are given; a gate without a scale as the one used
    out["scale"] = {"x": gate.x_unit, "y": gate.y_unit} if "/" in gate.scale else gate.scale
    if gate.x_bounds is not None:
        out["bounds"] = {"x": list(gate.x_bounds)}
        if gate.y_bounds is not None:
            out["bounds"]["y"] = list(gate.y_bounds)
    if gate.vertices is not None:
        out["vertices"] = [list(v) for v in gate.vertices]
    return out


def merged(base: Mapping[str, Any], input_dir: Path) -> dict[str, Any]:
    """ctx.params overlaid by the analysis folder's params.json (the folder wins)."""
    return {**base, **read_params_file(input_dir)}


def parse(raw: Mapping[str, Any]) -> Params:
    known = set(Params.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise unknown_parameters(unknown, known)
    d = Params()
    transform = _choice(raw, "transform", TRANSFORMS, d.transform)
    params = Params(
        transform=transform,
        cofactor=_number(raw, "cofactor", d.cofactor, low=0.0, low_open=True),
        logicle=_logicle(raw.get("logicle")),
        compensate=_bool(raw, "compensate", d.compensate),
        gates=_gates(raw.get("gates")),
        min_events=_int(raw, "min_events", d.min_events, low=0),
        saturation_threshold=_number(raw, "saturation_threshold", d.saturation_threshold, 0.0, 1.0),
        drift_threshold=_number(raw, "drift_threshold", d.drift_threshold, low=0.0, low_open=True),
        drift_channel=_optional_str(raw, "drift_channel"),
        time_slices=_int(raw, "time_slices", d.time_slices, low=2, high=1000),
        singlet_tolerance=_number(raw, "singlet_tolerance", d.singlet_tolerance, low=0.0, low_open=True),
        fsc_area=_optional_str(raw, "fsc_area"),
        fsc_height=_optional_str(raw, "fsc_height"),
        fsc_width=_optional_str(raw, "fsc_width"),
        ssc_area=_optional_str(raw, "ssc_area"),
        max_plot_points=_int(raw, "max_plot_points", d.max_plot_points, low=100, high=1_000_000),
        gating_file=_gating_file(raw.get("gating_file")),
        sample_group=_optional_name(raw, "sample_group"),
    )
    if params.gating_file is not None and params.gates:
        raise ParameterError("gating_file: give either gates or a gating_file, not both")
    if params.sample_group is not None and not (params.gating_file or "").lower().endswith(".wsp"):
        raise ParameterError("sample_group: only a FlowJo workspace (gating_file ending in .wsp) has sample groups")
    return params


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number(
    raw: Mapping[str, Any],
    key: str,
    default: float,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    value = raw.get(key, default)
    if not _is_number(value):
        raise ParameterError(f"{key}: expected a finite number, got {value!r}")
    value = float(value)
    if low is not None and (value < low or (low_open and value == low)):
        raise ParameterError(f"{key}: must be {'>' if low_open else '>='} {low:g}, got {value:g}")
    if high is not None and value > high:
        raise ParameterError(f"{key}: must be <= {high:g}, got {value:g}")
    return value


def _int(raw: Mapping[str, Any], key: str, default: int, low: int, high: int | None = None) -> int:
    value = raw.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ParameterError(f"{key}: expected an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        span = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ParameterError(f"{key}: must be {span}, got {value}")
    return value


def _bool(raw: Mapping[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ParameterError(f"{key}: expected true or false, got {value!r}")
    return value


def _choice(raw: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    value = raw.get(key, default)
    if value not in choices:
        raise ParameterError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _optional_str(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(f"{key}: expected a channel name, got {value!r}")
    return value


def _optional_name(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def _gating_file(value: Any) -> str | None:
    """A path inside the analysis folder, or `../name` for a file directly in the batch folder
    (checked by text only: parse() reads no file)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(f"gating_file: expected a file name such as \"panel.wsp\", got {value!r}")
    in_batch = value.startswith(BATCH_FOLDER)
    parts = value.removeprefix(BATCH_FOLDER).replace("\\", "/").split("/")
    if value.startswith("/") or ".." in parts or ":" in parts[0] or not parts[-1] or (in_batch and len(parts) > 1):
        raise ParameterError(
            f"gating_file: must be a path inside the analysis folder, or ../name for a file in the batch "
            f"folder beside the analysis folders, got {value!r}"
        )
    if not value.lower().endswith((".wsp", ".xml")):
        raise ParameterError(
            f"gating_file: expected a FlowJo workspace (.wsp) or a GatingML 2.0 document (.xml), got {value!r}"
        )
    return value


def _logicle(value: Any) -> Logicle:
    if value is None:
        return Logicle()
    if not isinstance(value, Mapping):
        raise ParameterError(f"logicle: expected an object with keys t, w, m, a, got {value!r}")
    unknown = sorted(set(value) - {"t", "w", "m", "a"})
    if unknown:
        raise ParameterError(f"logicle: unknown key(s) {', '.join(map(repr, unknown))}; known: t, w, m, a")
    d = Logicle()
    t = None if value.get("t") is None else _number(value, "t", 0, low=0, low_open=True)
    m = _number(value, "m", d.m, low=0, low_open=True)
    w = _number(value, "w", d.w, low=0)
    a = _number(value, "a", d.a, low=0)
    # The logicle scale is only defined for W <= M/2 (Moore & Parks 2012).
    if w > m / 2:
        raise ParameterError(f"logicle.w: must be <= logicle.m / 2 ({m / 2:g}), got {w:g}")
    if a > m:
        raise ParameterError(f"logicle.a: must be <= logicle.m ({m:g}), got {a:g}")
    return Logicle(t=t, w=w, m=m, a=a)


def _gates(value: Any) -> tuple[Gate, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ParameterError(f"gates: expected a list of gate objects, got {type(value).__name__}")
    gates: list[Gate] = []
    names: set[str] = {ROOT, *AUTO_GATES}
    for i, item in enumerate(value):
        gates.append(_gate(item, f"gates[{i}]", names))
        names.add(gates[-1].name)
    return tuple(gates)


def _gate(item: Any, where: str, defined: set[str]) -> Gate:
    if not isinstance(item, Mapping):
        raise ParameterError(f"{where}: expected an object, got {item!r}")
    allowed = {"name", "parent", "type", "x", "y", "bounds", "vertices", "scale"}
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise ParameterError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(allowed))}"
        )
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ParameterError(f"{where}.name: expected a non-empty string, got {name!r}")
    if name in defined:
        raise ParameterError(f"{where}.name: {name!r} is already defined (names must be unique)")
    parent = item.get("parent", ROOT)
    if parent not in defined:
        raise ParameterError(
            f"{where}.parent: {parent!r} is not defined before this gate; "
            f"use {ROOT!r}, {', '.join(map(repr, AUTO_GATES))} or an earlier gate's name"
        )
    kind = item.get("type")
    if kind not in GATE_TYPES:
        raise ParameterError(f"{where}.type: expected one of {', '.join(GATE_TYPES)}, got {kind!r}")
    x = item.get("x")
    if not isinstance(x, str) or not x:
        raise ParameterError(f"{where}.x: expected a channel name, got {x!r}")
    y = item.get("y")
    if y is not None and (not isinstance(y, str) or not y):
        raise ParameterError(f"{where}.y: expected a channel name, got {y!r}")
    scale, units = _scale(item.get("scale"), f"{where}.scale", y is not None)
    named = item.get("scale") is not None
    if kind == "rectangle":
        if "vertices" in item:
            raise ParameterError(f"{where}.vertices: only polygon gates take vertices; use bounds")
        x_bounds, y_bounds = _bounds(item.get("bounds"), f"{where}.bounds", y is not None)
        _check_decades(f"{where}.bounds.x", units[0], x_bounds)
        if y_bounds is not None:
            _check_decades(f"{where}.bounds.y", units[1], y_bounds)
        return Gate(name, parent, kind, x, y, scale, x_bounds=x_bounds, y_bounds=y_bounds, scale_named=named)
    if y is None:
        raise ParameterError(f"{where}.y: a polygon gate needs a y channel")
    if "bounds" in item:
        raise ParameterError(f"{where}.bounds: only rectangle gates take bounds; use vertices")
    vertices = _vertices(item.get("vertices"), f"{where}.vertices")
    _check_decades(f"{where}.vertices (x)", units[0], tuple(v[0] for v in vertices))
    _check_decades(f"{where}.vertices (y)", units[1], tuple(v[1] for v in vertices))
    return Gate(name, parent, kind, x, y, scale, vertices=vertices, scale_named=named)


def _scale(value: Any, where: str, has_y: bool) -> tuple[str, tuple[str, str]]:
    """The gate's scale as stored ("linear", or "linear/decades" per axis) and the unit of each axis."""
    if value is None:
        return LEGACY_SCALE, (LEGACY_SCALE, LEGACY_SCALE)
    if isinstance(value, str):
        if value not in SCALES:
            raise ParameterError(f"{where}: expected one of {', '.join(SCALES)}, got {value!r}")
        return value, (value, value)
    if isinstance(value, Mapping):
        keys = {"x", "y"} if has_y else {"x"}
        if set(value) != keys or any(value[k] not in SCALES for k in keys):
            shape = '{"x": unit, "y": unit}' if has_y else '{"x": unit}'
            raise ParameterError(f"{where}: expected {shape} with units from {', '.join(SCALES)}, got {value!r}")
        x_unit = str(value["x"])
        y_unit = str(value["y"]) if has_y else x_unit
        return (f"{x_unit}/{y_unit}" if has_y else x_unit), (x_unit, y_unit)
    raise ParameterError(f"{where}: expected one of {', '.join(SCALES)} or one per axis, got {value!r}")


def _check_decades(where: str, unit: str, values: tuple[float | None, ...]) -> None:
    for v in values:
        if unit == "decades" and v is not None and abs(v) > MAX_DECADES:
            raise ParameterError(
                f"{where}: {v:g} is not a number of decades (log10 of data units, e.g. 3 for 1,000); "
                'for data units use "scale": "linear"'
            )


Bounds = tuple[float | None, float | None]


def _bounds(value: Any, where: str, has_y: bool) -> tuple[Bounds, Bounds | None]:
    if not isinstance(value, Mapping) or "x" not in value or (has_y and "y" not in value):
        need = '{"x": [min, max], "y": [min, max]}' if has_y else '{"x": [min, max]}'
        raise ParameterError(f"{where}: expected {need} (null for an open side), got {value!r}")
    extra = sorted(set(value) - ({"x", "y"} if has_y else {"x"}))
    if extra:
        raise ParameterError(f"{where}: unexpected key(s) {', '.join(map(repr, extra))}")
    x = _pair(value["x"], f"{where}.x")
    return x, (_pair(value["y"], f"{where}.y") if has_y else None)


def _pair(value: Any, where: str) -> Bounds:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ParameterError(f"{where}: expected [min, max], got {value!r}")
    for v in value:
        if v is not None and not _is_number(v):
            raise ParameterError(f"{where}: bounds must be finite numbers or null, got {v!r}")
    lo, hi = (None if v is None else float(v) for v in value)
    if lo is None and hi is None:
        raise ParameterError(f"{where}: at least one of min and max must be a number")
    if lo is not None and hi is not None and lo >= hi:
        raise ParameterError(f"{where}: min must be below max, got [{lo:g}, {hi:g}]")
    return lo, hi


def _vertices(value: Any, where: str) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list) or len(value) < 3:
        raise ParameterError(f"{where}: expected a list of at least 3 [x, y] points, got {value!r}")
    points: list[tuple[float, float]] = []
    for j, point in enumerate(value):
        if not isinstance(point, list | tuple) or len(point) != 2 or not all(map(_is_number, point)):
            raise ParameterError(f"{where}[{j}]: expected [x, y] with finite numbers, got {point!r}")
        points.append((float(point[0]), float(point[1])))
    return tuple(points)
