"""The diagnostics' calibration record: computed from the validation, never stale, read by rule.

``leapresearch/publish/diagnostic_calibration.json`` is written by
``validation/families.py::write_summary`` from ``summary.json`` and ``design.json``; the
front page reads only the diagnostics whose size it records near nominal (issue 23, item 4).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import tomllib

import numpy as np
import pandas as pd
import pytest

from leapresearch.paths import PROJECT_ROOT
from leapresearch.publish import calibration as cb

FAMILY_ROLES = {
    "works_a": ("holds", False),
    "works_b": ("holds", False),
    "fails": ("fails", True),
    "biased": ("holds", True),
}


def synthetic_summary(rates: dict[str, dict[str, float]]) -> dict:
    """A validation summary of made-up families (:data:`FAMILY_ROLES`), 50 draws each, with
    ``rates[name][family]``."""
    return {
        "command": "made up",
        "verdict": [
            {"family": f, "assumption": a, "bias_significant": b}
            for f, (a, b) in FAMILY_ROLES.items()
        ],
        "diagnostics": [
            {
                "family": f,
                "diagnostic": name,
                "draws": 50,
                "estimable": 50,
                "rejection_rate": by[f],
                "rejection_mcse": float(np.sqrt(by[f] * (1 - by[f]) / 50)),
            }
            for name, by in rates.items()
            for f in FAMILY_ROLES
        ],
    }


def synthetic_calibration(rates: dict[str, dict[str, float]]) -> cb.Calibration:
    """A calibration of made-up families (:data:`FAMILY_ROLES`) with ``rates[name][family]``."""
    design = {"commit": "f" * 40, "alpha": 0.05, "sample_fraction": 0.5}
    return cb.from_record(
        cb.calibration_record(synthetic_summary(rates), design, source="s", design_source="d")
    )


def _oversized(record: dict, keep: tuple[str, ...] = ()) -> dict:
    """``record`` with the size of every diagnostic but ``keep`` over the bound (16%)."""
    for name, d in record["diagnostics"].items():
        if name not in keep and d["size"]["max"] is not None:
            d["size"]["max"] = max(d["size"]["max"], 0.16)
    return record


def families_only_calibration() -> cb.Calibration:
    """The packaged record at the families' own size (no size checks) in which only the
    adjusted main-window pre-trend test is calibrated (its size there is 0-4%; the others'
    set over the bound), for tests of how the report reads one calibrated test."""
    record = json.loads(cb.CALIBRATION_FILE.read_text())
    record = {k: v for k, v in record.items() if k != "size_checks"}
    cal = cb.from_record(_oversized(record, keep=("pretrend_adjusted_main",)))
    assert cal.calibrated() == ["pretrend_adjusted_main"]
    return cal


def no_test_calibration() -> cb.Calibration:
    """The packaged record with every diagnostic's size over the bound: no diagnostic is
    read (as the record said between the fifth freeze's size check and the sixth freeze),
    for tests of how the report reads none."""
    record = _oversized(json.loads(cb.CALIBRATION_FILE.read_text()))
    cal = cb.from_record(record)
    assert cal.calibrated() == []
    return cal


def _rates(works: tuple[float, float], fails: float, biased: float) -> dict[str, float]:
    return {"works_a": works[0], "works_b": works[1], "fails": fails, "biased": biased}


def test_the_record_follows_the_rule_not_a_list_of_families():
    cal = synthetic_calibration(
        {
            "pretrend_adjusted_main": _rates((0.02, 0.10), 0.04, 0.6),
            "placebo_post": _rates((0.05, 0.11), 0.9, 0.9),
        }
    )
    good, bad = cal.diagnostics["pretrend_adjusted_main"], cal.diagnostics["placebo_post"]
    # size over the families where the assumption holds and the bias is not significant
    assert good.size.families == ("works_a", "works_b")
    assert (good.size.low, good.size.high) == (0.02, 0.10)
    assert good.power["assumption_fails"].families == ("fails",)
    assert good.power["design_biased"].families == ("biased",)
    # the rule: at most 10% in every family where the design works (10% passes, 11% not)
    assert good.calibrated and not bad.calibrated
    assert cal.calibrated() == ["pretrend_adjusted_main"] and cal.uncalibrated() == ["placebo_post"]
    assert good.no_power_against() and not bad.no_power_against()
    assert good.measured() == (
        "rejected in 2-10% of validation draws where the design is right (2 families), 4% "
        "where parallel trends fail (1) and 60% where the design is biased although parallel "
        "trends hold (1)"
    )
    assert "at most 10%" in cal.rule()
    # a family moves role with its verdict, not with its name
    flipped = {
        "command": "x",
        "verdict": [{"family": "works_a", "assumption": "holds", "bias_significant": True}],
        "diagnostics": [
            {"family": "works_a", "diagnostic": "d", "draws": 9, "estimable": 9,
             "rejection_rate": 0.0, "rejection_mcse": 0.0}
        ],
    }  # fmt: skip
    rec = cb.calibration_record(
        flipped, {"commit": "c", "alpha": 0.05, "sample_fraction": 1}, source="s", design_source="d"
    )
    assert rec["families"]["works_a"]["role"] == "design_biased"
    assert rec["diagnostics"]["d"]["size"]["families"] == []
    assert not cb.from_record(rec).diagnostics["d"].calibrated  # no size measured: not read


def test_a_size_measured_at_another_sample_size_can_uncalibrate_a_diagnostic():
    """A test within the bound on the families' small samples but above it in a larger
    held-out run (a small bias the larger sample detects) is not read; its words say both."""
    summary = synthetic_summary(
        {
            "pretrend_adjusted_main": dict.fromkeys(FAMILY_ROLES, 0.04),
            "pretrend_adjusted_far": dict.fromkeys(FAMILY_ROLES, 0.06),
        }
    )
    bigger = {
        "command": "made up, larger",
        # a family biased on the small samples counts where its own run finds no bias
        "verdict": [{"family": "biased", "assumption": "holds", "bias_significant": False}],
        "diagnostics": [
            {"family": "biased", "diagnostic": name, "draws": 100, "estimable": 100,
             "rejection_rate": rate, "rejection_mcse": 0.03}
            for name, rate in (("pretrend_adjusted_main", 0.16), ("pretrend_adjusted_far", 0.08))
        ],
    }  # fmt: skip
    check = cb.calibration_record(
        bigger,
        {"commit": "c", "alpha": 0.05, "sample_fraction": 1.0},
        source="b",
        design_source="e",
    )
    record = cb.calibration_record(
        summary,
        {"commit": "f" * 40, "alpha": 0.05, "sample_fraction": 0.2},
        source="s",
        design_source="d",
        size_checks=[check],
    )
    cal = cb.from_record(record)
    main, far = cal.diagnostics["pretrend_adjusted_main"], cal.diagnostics["pretrend_adjusted_far"]
    assert main.size.high == 0.04 and not main.calibrated  # 16% at the larger size
    assert [c.sample_fraction for c in main.oversized_elsewhere()] == [1.0]
    assert far.calibrated and not far.oversized_elsewhere()  # 8% there: within the bound
    assert cal.calibrated() == ["pretrend_adjusted_far"]
    assert main.size_summary() == "4% at 20% of the demo's size, 16% at the demo's size"
    assert main.measured().endswith(
        "; at the demo's size, 16% where the design is right (1 family, 100 draws each)"
    )
    assert "at every sample size measured" in cal.rule()
    assert cal.brief() == "4 simulated families, 50 draws each at 20% of the demo's size"
    assert cal.provenance().endswith("; s and b")
    # without size checks the same record reads the test
    alone = cb.from_record({k: v for k, v in record.items() if k != "size_checks"})
    assert alone.diagnostics["pretrend_adjusted_main"].calibrated


def test_the_front_page_says_why_no_check_is_read():
    from leapresearch.publish.narrative import describe_calibrated_diagnostics

    cal = cb.load_calibration()
    text = describe_calibrated_diagnostics(None, calibration=cal)
    if cal.calibrated():
        assert "No check of the design is read here" not in text
        return
    assert text.startswith("No check of the design is read here: none passed the calibration")
    grown = 0
    for d in cal.diagnostics.values():
        if d.size is not None and d.size.high <= cb.SIZE_BOUND:  # within the bound at first
            for c in d.oversized_elsewhere():
                assert f"{c.size.percent()} at {cb.size_words(c.sample_fraction)}" in text
                grown += 1
    # the reason is said only where a test kept its size at one size and lost it at another
    said = "keeps its size on a small sample can lose it on a larger one" in text
    assert said == (grown > 0)


def test_a_calibrated_check_not_computed_for_a_group_names_it_as_readers_read_it():
    from leapresearch.publish.narrative import describe_calibrated_diagnostics

    cal = families_only_calibration()  # only the adjusted main-window test is read
    for group, who in (("grade_band:PK-5", "Grades PK-5"), ("all", "all visited students")):
        text = describe_calibrated_diagnostics(None, group=group, calibration=cal)
        assert text.endswith(f": not computed for {who}."), text
        assert "grades pk-5" not in text


def _packaged_sources() -> tuple[list, list]:
    packaged = json.loads(cb.CALIBRATION_FILE.read_text())
    summaries = [PROJECT_ROOT / p for p in packaged["source"].split(cb.SOURCE_SEPARATOR)]
    designs = [PROJECT_ROOT / p for p in packaged["design_source"].split(cb.SOURCE_SEPARATOR)]
    return summaries, designs


def _run_at(source: str | None) -> tuple[dict, dict, str] | None:
    """``(summary, design, source)`` of a run's ``summary.json`` named in a record."""
    if source is None:
        return None
    path = PROJECT_ROOT / source
    design = json.loads(path.with_name("design.json").read_text())
    return json.loads(path.read_text()), design, source


def _pretrend_run_of(record: dict) -> tuple[dict, dict, str] | None:
    """The pre-trend-only run a record names (``pretrend_source``), as the record read it."""
    return _run_at(record.get("pretrend_source"))


def _sensitivity_run_of(record: dict) -> tuple[dict, dict, str] | None:
    """The ``--sensitivity-only`` run a record describes (``sensitivity.source``)."""
    return _run_at(record.get("sensitivity", {}).get("source"))


def test_the_bounds_validation_is_read_by_role_and_said_as_the_numbers_say():
    def cell(family, rel_time, bound, breakdown, coverage, source="untreated"):
        return {"family": family, "source": source, "method": "relative_magnitudes",
                "bound": bound, "rel_time": rel_time, "draws": 20, "coverage": coverage,
                "median_breakdown": breakdown}  # fmt: skip

    roles = {"a": "design_works", "b": "design_works", "c": "assumption_fails"}
    summary = {"cells": [cell("a", 9, 0.0, 0.3, 0.9), cell("a", 9, 0.5, 0.3, 1.0),
                         cell("b", 9, 0.0, 0.0, 0.95), cell("b", 9, 0.5, 0.0, 0.97),
                         cell("c", 9, 0.0, 0.6, 0.1), cell("c", 9, 0.5, 0.6, 0.7),
                         cell("a", 9, 0.0, 9.0, 0.0, source="full"),
                         cell("z", 9, 0.0, 9.0, 0.0)]}  # fmt: skip
    design = {"commit": "c7", "sample_fraction": 1.0}
    rates = cb.sensitivity_rates(summary, design, "s.json", roles=roles)
    works = rates["by_role"]["design_works"]
    # the package's pre-period only ("full" left out), families of the verdict only ("z")
    assert works["families"] == ["a", "b"]
    assert works["median_breakdown"] == {"9": [0.0, 0.3]}
    assert works["coverage"] == {"0": [0.9, 0.95], "0.5": [0.97, 1.0]}
    assert "design_biased" not in rates["by_role"] and rates["draws_per_family"] == 20
    cal = dataclasses.replace(families_only_calibration(), sensitivity=rates)
    words = cal.breakdown_words(9)
    assert "was 0.00-0.30 where the design is right (2 families) and 0.60 where parallel " in words
    assert "no evidence that the design is right" in words
    assert words.endswith("covered the true effect in 97-100% of draws.")
    assert cal.breakdown_words(3) == ""  # a month the run did not record
    # where the failing families' breakdowns are not higher, no such conclusion is drawn
    rates["by_role"]["assumption_fails"]["median_breakdown"]["9"] = [0.1, 0.2]
    assert "no evidence" not in dataclasses.replace(cal, sensitivity=rates).breakdown_words(9)
    assert dataclasses.replace(cal, sensitivity=None).breakdown_words(9) == ""
    with pytest.raises(ValueError, match="no relative-magnitudes bound"):
        cb.sensitivity_rates({"cells": [cell("z", 9, 0.0, 0.1, 1.0)]}, design, "s", roles=roles)


def test_a_pretrend_run_replaces_only_the_pretrend_rates_of_the_verdict_families():
    def row(family, name, rate, draws=10):
        return {"family": family, "diagnostic": name, "draws": draws, "estimable": draws,
                "rejection_rate": rate, "rejection_mcse": 0.01}  # fmt: skip

    summary = {
        "command": "full",
        "verdict": [{"family": "a", "assumption": "holds", "bias_significant": False},
                    {"family": "b", "assumption": "fails", "bias_significant": True}],
        "diagnostics": [row("a", "pretrend_adjusted_main", 0.6), row("a", "placebo_post", 1.0, 30),
                        row("b", "pretrend_adjusted_main", 0.2), row("b", "placebo_post", 0.9, 30)],
    }  # fmt: skip
    pretrends = {
        "command": "pre",
        "diagnostics": [row("a", "pretrend_adjusted_main", 0.05),
                        row("c", "pretrend_adjusted_main", 0.5)],
    }  # fmt: skip
    out = cb.with_pretrend_run(summary, pretrends)
    got = {(r["family"], r["diagnostic"]): r["rejection_rate"] for r in out["diagnostics"]}
    # a's pre-trend rate replaced, b's gone (not in the run), c not a verdict family
    assert got == {("a", "pretrend_adjusted_main"): 0.05, ("a", "placebo_post"): 1.0,
                   ("b", "placebo_post"): 0.9}  # fmt: skip
    assert out["verdict"] == summary["verdict"] and out["command"].startswith("full; ")
    record = cb.calibration_record(
        summary, {"commit": "c1", "alpha": 0.05, "sample_fraction": 1}, source="s",
        design_source="d", pretrends=(pretrends, {"commit": "c2"}, "p"),
    )  # fmt: skip
    assert record["pretrend_source"] == "p" and record["pretrend_design_commit"] == "c2"
    assert record["diagnostics"]["pretrend_adjusted_main"]["size"]["max"] == 0.05
    assert cb.from_record(record).diagnostics["pretrend_adjusted_main"].calibrated
    assert not cb.from_record(record).diagnostics["placebo_post"].calibrated
    # each diagnostic is described by the draws its own rates rest on (the pre-trend run's
    # 10, the placebo's 30), not by the record's range
    cal = cb.from_record(record)
    assert cal.brief(cal.diagnostics["pretrend_adjusted_main"]).startswith(
        "2 simulated families, 10 draws each"
    )
    assert cal.brief(cal.diagnostics["placebo_post"]).startswith(
        "2 simulated families, 30 draws each"
    )
    assert cal.provenance(cal.diagnostics["pretrend_adjusted_main"]).startswith(
        "2 simulated families, 10 draws"
    )
    with pytest.raises(ValueError, match="no pre-trend test"):
        cb.with_pretrend_run(summary, {"command": "x", "diagnostics": [row("c", "pretrend_x", 0)]})


def test_the_packaged_record_is_what_its_committed_summary_gives():
    """It cannot go stale: the record equals the one its named summaries and design give."""
    packaged = json.loads(cb.CALIBRATION_FILE.read_text())
    summaries, designs = _packaged_sources()
    for summary, design in zip(summaries, designs, strict=True):
        assert summary.parent == design.parent and summary.name == "summary.json"
    runs = [json.loads(p.read_text()) for p in summaries]
    checks = [
        cb.calibration_record(
            json.loads((PROJECT_ROOT / c["source"]).read_text()),
            json.loads((PROJECT_ROOT / c["design_source"]).read_text()),
            source=c["source"],
            design_source=c["design_source"],
            pretrends=_pretrend_run_of(c),
        )
        for c in packaged.get("size_checks", [])
    ]
    expected = cb.calibration_record(
        cb.pooled_summary(runs),
        json.loads(designs[-1].read_text()),
        source=packaged["source"],
        design_source=packaged["design_source"],
        size_checks=checks,
        pretrends=_pretrend_run_of(packaged),
        sensitivity=_sensitivity_run_of(packaged),
    )
    assert packaged == expected
    # every size check the validation names is in the record, each at another size
    fam = _families()
    assert [c["source"] for c in checks] == [
        f"validation/results/{name}/summary.json" for name in fam.SIZE_CHECK_RUNS
    ]
    assert all(c["sample_fraction"] != packaged["sample_fraction"] for c in checks)
    # and the validation's own numbers (each run's summary.md) are what the loader reads:
    # the pooled rate of lists is the runs' rates weighted by their estimable draws
    cal = cb.load_calibration()
    assert set(cal.diagnostics) == set(json.loads(designs[-1].read_text())["diagnostics"])
    rates, weights = [], []
    if "pretrend_source" in packaged:  # the pre-trend tests' rates are the pre-trend run's
        summaries = [PROJECT_ROOT / packaged["pretrend_source"]]
        runs = [json.loads(summaries[0].read_text())]
        assert fam.PRETREND_RUNS[_packaged_sources()[0][-1].parent.name] == summaries[0].parent.name
    for summary, run in zip(summaries, runs, strict=True):
        md = (summary.parent / "summary.md").read_text().split("## Diagnostics")[1]
        row = next(line for line in md.splitlines() if line.startswith("| lists | holds | "))
        mine = next(
            r
            for r in run["diagnostics"]
            if r["family"] == "lists" and r["diagnostic"] == "pretrend_adjusted_main"
        )
        assert row.split("|")[3].strip().startswith(f"{100 * mine['rejection_rate']:.0f} (")
        rates.append(mine["rejection_rate"])
        weights.append(mine["estimable"])
    first = packaged["diagnostics"]["pretrend_adjusted_main"]["by_family"]["lists"]["rate"]
    assert first == round(float(np.average(rates, weights=weights)), 6)


def test_pooling_runs_decides_roles_on_every_draw():
    """Two runs whose worst months straddle the 3-MC-SE rule: pooled, the family whose bias
    repeats is biased and the one whose bias was noise works; rates pool by draws."""

    def run(bias_a: float, bias_b: float, rate: float) -> dict:
        cells = [
            {"family": f, "estimand": "event_study", "group": "all", "rel_time": m,
             "draws": 100, "bias": b if m == 6 else 0.0, "bias_mcse": 0.2}
            for f, b in (("steady", bias_a), ("noisy", bias_b))
            for m in (1, 6)
        ]  # fmt: skip
        diagnostics = [
            {"family": f, "diagnostic": "d", "draws": 100, "estimable": 100,
             "rejection_rate": rate, "rejection_mcse": 0.01}
            for f in ("steady", "noisy")
        ]  # fmt: skip
        verdict = [{"family": f, "assumption": "holds"} for f in ("steady", "noisy")]
        return {"command": "c", "cells": cells, "verdict": verdict, "diagnostics": diagnostics}

    first, second = run(0.55, 0.65, 0.02), run(0.55, -0.5, 0.06)
    pooled = cb.pooled_summary([first, second])
    verdict = {v["family"]: v for v in pooled["verdict"]}
    # steady: 0.55 twice, MC SE 0.2 / sqrt(2) = 0.141: z = 3.9; each run alone: z = 2.75
    assert verdict["steady"]["bias_significant"] and verdict["steady"]["draws"] == 200
    assert abs(verdict["steady"]["its_mcse"] - 0.2 / np.sqrt(2)) < 1e-12
    # noisy: 0.65 (z = 3.25, significant alone) then -0.5: pooled 0.075
    assert not verdict["noisy"]["bias_significant"]
    assert abs(verdict["noisy"]["worst_bias_all"] - 0.075) < 1e-12
    d = pooled["diagnostics"][0]
    assert d["draws"] == 200 and d["estimable"] == 200 and abs(d["rejection_rate"] - 0.04) < 1e-12
    assert cb.pooled_summary([first]) is first
    record = cb.calibration_record(
        pooled, {"commit": "c", "alpha": 0.05, "sample_fraction": 1}, source="s", design_source="d"
    )
    assert record["families"]["steady"]["role"] == "design_biased"
    assert record["families"]["noisy"]["role"] == "design_works"


def test_only_runs_of_one_event_study_design_are_pooled():
    """The committed runs differ in the long-term design only; anything the monthly design
    or its diagnostics read refuses the pooling."""
    import yaml

    fam = _families()
    _summaries, designs = _packaged_sources()
    records = [json.loads(p.read_text()) for p in designs]
    assert len(records) == len(fam.CALIBRATION_RUNS)
    assert fam.same_event_design(records[0], records[-1]) == []
    changed = json.loads(json.dumps(records[-1]))
    params = yaml.safe_load(changed["params_base_yaml"])
    params["matching"]["caliper"] = 2 * params["matching"]["caliper"]
    changed["params_base_yaml"] = yaml.safe_dump(params)
    assert fam.same_event_design(records[0], changed) == ["params.matching"]
    changed = {**records[-1], "headline_months": [1, 2]}
    assert fam.same_event_design(records[0], changed) == ["headline_months"]


def test_the_packaged_record_ships_with_the_package():
    meta = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    data = meta["tool"]["setuptools"]["package-data"]["leapresearch"]
    assert "publish/" + cb.CALIBRATION_FILE.name in data
    assert cb.CALIBRATION_FILE.parent.name == "publish"


def _families():
    path = PROJECT_ROOT / "validation" / "families.py"
    spec = importlib.util.spec_from_file_location("families_for_calibration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_validation_writes_the_record_and_names_pretrends_as_the_package(tmp_path):
    fam = _families()
    source = _packaged_sources()[0][-1]
    for name in ("summary.json", "design.json"):
        (tmp_path / name).write_bytes((source.parent / name).read_bytes())
    # a summary outside validation/results gets its record beside it (the package's is kept)
    written = fam.write_calibration_record(tmp_path)
    assert written == tmp_path.resolve() / cb.CALIBRATION_FILE.name
    mine = json.loads(written.read_text())
    alone = cb.calibration_record(
        json.loads((source.parent / "summary.json").read_text()),
        json.loads((source.parent / "design.json").read_text()),
        source="summary.json",
        design_source="design.json",
    )
    assert mine == alone  # that run alone, not pooled
    assert mine["source"] == "summary.json"  # relative to where it was summarised
    assert fam.write_calibration_record(tmp_path / "nothing") is None  # no design.json
    # the run's tables are named as the validation names them
    for basis, months in (("adjusted", "<=-12..-2"), ("adjusted", "-24..-13"),
                          ("unadjusted", "-12..-2"), ("unadjusted", "-24..-13")):  # fmt: skip
        assert cb.pretrend_diagnostic(basis, months, -12) == fam._pretrend_name(basis, months, -12)


def test_the_run_s_diagnostics_are_found_in_its_tables():
    pretrends = pd.DataFrame(
        {
            "group": ["all", "all", "all", "g"],
            "basis": ["adjusted", "adjusted", "unadjusted", "adjusted"],
            "months": ["<=-10..-2", "-20..-11", "-10..-2", "<=-10..-2"],
            "statistic": [1.0, 2.0, 3.0, 4.0],
            "df": [9, 10, 9, 9],
            "p_value": [0.5, 0.01, 0.02, 0.3],
        }
    )
    falsification = pd.DataFrame(
        {"group": ["all", "all"], "term": ["month", "post_months"], "months": ["", "0..12"],
         "statistic": [np.nan, 5.0], "df": [np.nan, 13], "p_value": [np.nan, 0.001]}
    )  # fmt: skip
    placebo = pd.DataFrame(
        {"group": "all", "rel_time": [-3, 0, 1, 2], "post_wald_statistic": 7.0,
         "post_wald_df": 3, "post_wald_p_value": 0.02}
    )  # fmt: skip
    found = cb.diagnostic_results(pretrends, falsification, placebo)
    assert found["diagnostic"].tolist() == [
        "pretrend_adjusted_main",
        "pretrend_adjusted_far",
        "pretrend_unadjusted_main",  # its window start is read from the binned span
        "pretrend_adjusted_main",
        "falsification_post",
        "placebo_post",
    ]
    assert found["p_value"].tolist() == [0.5, 0.01, 0.02, 0.3, 0.001, 0.02]
    assert found.iloc[-1]["months"] == "0..2"
    note = pd.DataFrame({"group": ["all"], "note": ["not estimable"]})
    assert cb.diagnostic_results(None, note, note).empty


def test_the_packaged_classification_is_the_rule_applied_to_its_numbers():
    packaged = json.loads(cb.CALIBRATION_FILE.read_text())
    cal = cb.load_calibration()
    for name, d in packaged["diagnostics"].items():
        works = [
            d["by_family"][f]["rate"]
            for f, fam in packaged["families"].items()
            if fam["assumption"] == "holds" and not fam["bias_significant"]
        ]
        elsewhere = [
            c["diagnostics"][name]["by_family"][f]["rate"]
            for c in packaged.get("size_checks", [])
            for f, fam in c["families"].items()
            if fam["role"] == "design_works" and name in c["diagnostics"]
        ]
        assert cal.diagnostics[name].calibrated == (max(works + elsewhere) <= 0.10), name


def test_a_run_of_some_families_leaves_the_packaged_record_alone():
    """Under validation/results, only a summary of every family rewrites the package's json."""
    import shutil

    fam = _families()
    source = _packaged_sources()[0][-1]
    before = cb.CALIBRATION_FILE.read_bytes()
    folder = fam.mc.RESULTS / f"_partial-test-{os.getpid()}"
    folder.mkdir(parents=True)
    try:
        summary = json.loads((source.parent / "summary.json").read_text())
        summary["verdict"] = summary["verdict"][:3]
        (folder / "summary.json").write_text(json.dumps(summary))
        shutil.copy(source.parent / "design.json", folder / "design.json")
        written = fam.write_calibration_record(folder)
        assert written == folder.resolve() / cb.CALIBRATION_FILE.name
        assert cb.CALIBRATION_FILE.read_bytes() == before
    finally:
        shutil.rmtree(folder)


def test_families_with_different_numbers_of_draws_are_described_by_their_range():
    """The fifth freeze's three first families ran 150 draws, the five run later 100: the
    front page says ``100-150 draws each`` (it said ``100- draws each``)."""
    summary = synthetic_summary({"d": {f: 0.05 for f in FAMILY_ROLES}})
    summary["diagnostics"][0]["draws"] = 150
    design = {"commit": "f" * 40, "alpha": 0.05, "sample_fraction": 1.0}
    record = cb.calibration_record(summary, design, source="s", design_source="d")
    assert record["draws_per_family"] == [50, 150]
    cal = cb.from_record(record)
    assert cal.brief() == "4 simulated families, 50-150 draws each at the demo's size"
    assert cb.draws_words(100) == "100"


@pytest.mark.parametrize(
    ("fraction", "words"),
    [
        (1.0, "the demo's size"),
        (0.2, "20% of the demo's size"),
        (4.0, "4 times the demo's size"),
        (2.5, "2.5 times the demo's size"),
    ],
)
def test_sizes_are_said_as_a_share_or_a_multiple_of_the_demo(fraction, words):
    assert cb.size_words(fraction) == words
