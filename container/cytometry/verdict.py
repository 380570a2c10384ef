"""The QC verdict of one file from its qc.json facts: pass, warn or fail, with a reason for each
finding. Pure Python (no numpy), so the bot's report can judge an older qc.json the same way.

    fail  the file could not be read, or holds fewer events than `min_events`
    warn  saturated or margin events above the threshold, a gap / burst / clog in the flow rate,
          drift beyond the threshold on any scatter or fluorescence channel, a gate with no events
          (or flagged unreliable, or outside the data), a channel the gates need is missing
    pass  nothing of the above
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PASS, WARN, FAIL = "pass", "warn", "fail"
ORDER = (PASS, WARN, FAIL)


def judge(entry: Mapping[str, Any]) -> dict[str, Any]:
    """{"verdict": ..., "reasons": [...]} for one file's qc.json entry."""
    if entry.get("status") == "failed":
        return {"verdict": FAIL, "reasons": [f"unreadable: {entry.get('error') or 'unknown error'}"]}
    fails: list[str] = []
    warns: list[str] = []
    flags = entry.get("flags") or {}
    if flags.get("too_few_events"):
        fails.append(f"too few events ({entry.get('events', 0):,})")
    saturation = entry.get("saturation") or {}
    for name in flags.get("saturated_channels") or []:
        warns.append(f"{name} saturated ({100 * float(saturation.get(name, 0.0)):.1f}% at the top)")
    flow = entry.get("flow_rate") or {}
    if flow.get("gap"):
        warns.append(f"time gap ({100 * flow['largest_gap_fraction']:.0f}% of the acquisition)")
    if flow.get("burst"):
        warns.append(f"burst ({flow['peak_ratio']:.0f}× the median flow rate)")
    if flow.get("clog"):
        warns.append(f"clog (flow slowed in {100 * flow['slowed_fraction']:.0f}% of the acquisition)")
    drifting = list(entry.get("drifting_channels") or [])
    if not drifting and flags.get("signal_drift") and entry.get("drift"):
        drifting = [entry["drift"]["channel"]]
    drift_values = entry.get("channel_drift") or {}
    for name in drifting:
        value = drift_values.get(name)
        if value is None and entry.get("drift") and entry["drift"].get("channel") == name:
            value = entry["drift"].get("max_relative_change")
        warns.append(f"{name} drift" + (f" ({100 * value:.0f}%)" if value is not None else ""))
    outside = list(flags.get("gates_outside_data") or [])
    for name in entry.get("empty_gates") or flags.get("empty_gates") or []:
        if name not in outside:  # a gate outside the data is empty too; its own reason says more
            warns.append(f"gate {name} holds no events")
    for name in flags.get("unreliable_gates") or []:
        warns.append(f"gate {name} unreliable")
    for name in outside:
        warns.append(f"gate {name} lies outside the data")
    missing = flags.get("missing_channels") or []
    if missing:
        warns.append(f"missing channel{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    verdict = FAIL if fails else WARN if warns else PASS
    return {"verdict": verdict, "reasons": fails + warns}


def worst(verdicts: list[str]) -> str:
    return max(verdicts, key=ORDER.index) if verdicts else PASS
