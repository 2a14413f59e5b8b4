"""``leapresearch compare``: two runs side by side (year over year, or before/after a change)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

HEADLINE_GROUPS = ("all", "grade_band:PK-5", "grade_band:6-12")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_run(run_dir: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """Provenance and event-study table of a finished run."""
    prov = Path(run_dir) / "provenance.json"
    table = Path(run_dir) / "tables" / "event_study.csv"
    if not prov.exists() or not table.exists():
        raise FileNotFoundError(f"{run_dir} is not a finished leapresearch run (no {prov.name})")
    return json.loads(prov.read_text()), pd.read_csv(table, dtype={"group": str})


def headline_comparison(
    table_a: pd.DataFrame, table_b: pd.DataFrame, *, rel_times=(1, 3, 6, 9)
) -> pd.DataFrame:
    """Estimates of both runs for the headline groups and months, with differences."""
    cols = ["group", "rel_time", "estimate", "std_error"]
    a = table_a.loc[table_a["group"].isin(HEADLINE_GROUPS) & table_a["rel_time"].isin(rel_times)]
    b = table_b.loc[table_b["group"].isin(HEADLINE_GROUPS) & table_b["rel_time"].isin(rel_times)]
    m = a[cols].merge(b[cols], on=["group", "rel_time"], how="outer", suffixes=("_a", "_b"))
    m["difference"] = m["estimate_b"] - m["estimate_a"]
    order = {g: i for i, g in enumerate(HEADLINE_GROUPS)}
    m = m.sort_values(["group", "rel_time"], key=lambda s: s.map(order) if s.name == "group" else s)
    return m.reset_index(drop=True)


def compare_runs(run_a: Path, run_b: Path) -> str:
    """Text report: headline estimates side by side, parameter and input changes flagged."""
    prov_a, tab_a = load_run(run_a)
    prov_b, tab_b = load_run(run_b)
    lines = [
        f"A: {run_a} (vintage {prov_a.get('vintage')}, commit "
        f"{(prov_a.get('git') or {}).get('commit')})",
        f"B: {run_b} (vintage {prov_b.get('vintage')}, commit "
        f"{(prov_b.get('git') or {}).get('commit')})",
        "",
    ]
    head = headline_comparison(tab_a, tab_b)
    lines.append("Headline estimates (pp of attendance; B - A):")
    lines.append(head.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    pa, pb = _flatten(prov_a.get("parameters", {})), _flatten(prov_b.get("parameters", {}))
    changed = sorted(k for k in set(pa) | set(pb) if pa.get(k) != pb.get(k))
    lines.append("")
    if changed:
        lines.append("Parameters that differ:")
        lines += [f"  {k}: {pa.get(k)!r} -> {pb.get(k)!r}" for k in changed]
    else:
        lines.append("Parameters: identical")
    ia, ib = prov_a.get("inputs", {}), prov_b.get("inputs", {})
    diff_inputs = sorted(
        k
        for k in set(ia) | set(ib)
        if (ia.get(k) or {}).get("sha256") != (ib.get(k) or {}).get("sha256")
    )
    if diff_inputs:
        lines.append("Input files that differ: " + ", ".join(diff_inputs))
    else:
        lines.append("Input files: identical (same sha256)")
    return "\n".join(lines)
