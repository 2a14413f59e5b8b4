"""The simulator's validation hooks (``validation/families.py``): each does what it says.

Every hook is off by default and then draws nothing; when on, the truth records what it
does (``truth["validation"]``): the Y(0) shift of the visited students by event month and
the intent-to-treat effect over every picked student.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leapresearch.data.simulate import SimulatedData, SimulationConfig, simulate
from leapresearch.data.simulate.config import VALIDATION_HOOKS
from leapresearch.data.simulate.params import _LEAP_DISTRICTS

ROOT = Path(__file__).resolve().parents[1]
FRACTION = 0.3
SEED = 41


def _families_module():
    spec = importlib.util.spec_from_file_location("families", ROOT / "validation" / "families.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _validation_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "validation" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FAMILIES = _families_module().FAMILIES


def family(name: str, seed: int = SEED) -> SimulatedData:
    return simulate(
        SimulationConfig(seed=seed, sample_fraction=FRACTION, **FAMILIES[name]["simulation"])
    )


@pytest.fixture(scope="module")
def default() -> SimulatedData:
    return simulate(SimulationConfig(seed=SEED, sample_fraction=FRACTION))


def first_completed(data: SimulatedData) -> pd.DataFrame:
    v = data.leap_visits
    done = v[v["visit_status"] == "completed"].sort_values("visit_date")
    first = done.groupby("student_id", as_index=False).first()
    first["month"] = pd.to_datetime(first["visit_date"]).dt.strftime("%Y-%m")
    return first


def test_hooks_off_leave_no_trace(default):
    assert "validation" not in default.truth
    assert not set(VALIDATION_HOOKS) & set(default.truth["config"])


def test_a_hook_that_draws_nothing_before_the_effects_leaves_the_data_as_they_were(default):
    """District-scaled effects: the same roster and visit log; only Y(1) differs."""
    spread = family("district_effects")
    pd.testing.assert_frame_equal(spread.students, default.students)
    pd.testing.assert_frame_equal(spread.leap_visits, default.leap_visits)
    assert spread.truth["validation"]["hooks"] == {"district_effect_spread": 0.8}
    assert spread.truth["event_study"]["all"] != default.truth["event_study"]["all"]


def test_district_effects_follow_the_district_factor():
    data = family("district_effects")
    names = [row[0] for row in _LEAP_DISTRICTS]
    spread = FAMILIES["district_effects"]["simulation"]["district_effect_spread"]
    es = data.truth["event_study"]
    n = data.truth["event_study_n"]
    rows = []
    for k, name in enumerate(names):
        group = f"district:{name}"
        if (
            group in es
            and n[group].get("6", 0) >= 20
            and name != data.truth["program"]["canvass_district"]
        ):
            factor = 1 + spread * (2 * k / (len(names) - 1) - 1)
            rows.append((factor, es[group]["6"]))
    factor, effect = np.array(rows).T
    assert len(rows) >= 6
    assert np.corrcoef(factor, effect)[0, 1] > 0.6


def test_no_effect_family_has_zero_truth():
    data = family("no_effect")
    for group, path in data.truth["event_study"].items():
        assert all(v == 0 for v in path.values()), group
    assert all(r["att"] == 0 for r in data.truth["long_term"])


def test_latent_shock_breaks_parallel_trends_after_the_visit_only():
    """Y(0) of the visited students recovers after the visit month, not before."""
    v = family("latent_shock").truth["validation"]
    shift = {int(k): x for k, x in v["y0_shift"].items()}
    assert all(x == 0 for k, x in shift.items() if k < 0)
    post = np.mean([shift[k] for k in (3, 6, 9)])
    assert post > 1.5, shift  # pp of the monthly attendance rate


def test_latent_shock_makes_picking_favour_the_shock():
    """With the recovery alone the picked students are those of the default draw; with
    the selection slope on too, other students are picked."""
    recovery_only = simulate(
        SimulationConfig(seed=SEED, sample_fraction=FRACTION, latent_recovery=0.08)
    )
    both = family("latent_shock")
    default = simulate(SimulationConfig(seed=SEED, sample_fraction=FRACTION))
    ids = [set(first_completed(d)["student_id"]) for d in (default, recovery_only, both)]
    assert ids[0] == ids[1]
    assert len(ids[0] & ids[2]) < 0.9 * len(ids[0])


def test_reachability_separates_the_completed_visit_and_intent_to_treat_effects():
    data = family("reachability")
    v = data.truth["validation"]
    share = 1 / (1 + FAMILIES["reachability"]["simulation"]["attempt_only_share"])
    assert v["completion_share"] == pytest.approx(share, abs=0.03)
    for k in ("3", "6", "9"):
        # completed students are the reachable ones: their Y(0) rises after the month
        assert v["y0_shift"][k] > 0.5
        # the intent-to-treat effect dilutes the completed-visit effect by the share
        att = data.truth["event_study"]["all"][k]
        assert v["intent_to_treat"][k] == pytest.approx(att * share, rel=0.1)
    assert all(v["y0_shift"][k] == 0 for k in v["y0_shift"] if int(k) < 0)


def test_waves_put_the_school_year_visits_in_the_wave_months(default):
    waves = FAMILIES["waves"]["simulation"]["list_waves"]
    school_year = [f"2021-{m:02d}" for m in range(9, 13)] + [f"2022-{m:02d}" for m in range(1, 7)]
    for data, inside in ((family("waves"), True), (default, False)):
        months = first_completed(data)["month"]
        months = months[months.isin(school_year)]
        in_waves = months.isin(waves).mean()
        assert (in_waves > 0.85) if inside else (in_waves < 0.5), months.value_counts()
    assert family("waves").truth["program"]["n_visited"] == default.truth["program"]["n_visited"]


def test_hook_settings_are_checked():
    with pytest.raises(ValueError, match="list_waves"):
        simulate(sample_fraction=0.05, list_waves=("2020-10",))
    with pytest.raises(ValueError, match="YYYY-MM"):
        SimulationConfig(list_waves=("October",))
    with pytest.raises(ValueError, match="district_effect_spread"):
        SimulationConfig(district_effect_spread=1.5)
    with pytest.raises(ValueError, match="latent_shock"):
        SimulationConfig(latent_shock=-1.0)


def test_family_seeds_are_held_out():
    """The families' seeds overlap no other validation script's or test's."""
    fam = _families_module()
    mc = fam.mc
    seeds = {fam.family_seed(f, i) for f in fam.FAMILIES for i in range(10_000)}
    used = [range(b, b + 100_000) for b in (*mc.SEED_BASE.values(), 500_000, 700_000)]
    assert min(seeds) >= 7_000_000 > max(max(r) for r in used)
    assert len(seeds) == 10_000 * len(fam.FAMILIES)
    # later freezes (validation/README.md): the procedure Monte Carlo, the long-term design's
    # stopped run, its second run and that design's demo-size check, the third freeze (long
    # differences) at demo size and at a fifth; no two ranges share a seed
    bases = (fam.FAMILY_SEED_BASE, 7_500_000, 8_000_000, 8_100_000, 8_200_000, 8_300_000)
    bases += (8_400_000, 8_500_000)  # the procedure schemes' pilot, the Bayesian scheme's run
    bases += (8_600_000,)  # the adjustment's fallback (pooled slopes), procedure run
    bases += (8_700_000,)  # the long-term censoring weights (fifth freeze), demo size
    bases += (8_800_000,)  # the fifth freeze's long-term design again (long_term_repeat.py)
    bases += (9_200_000,)  # the fifth freeze's design at four times the demo (size check)
    bases += (9_400_000, 9_500_000)  # the sixth freeze's pre-trend tests: demo size, four times
    bases += (9_600_000, 9_700_000)  # the seventh freeze's bounds: demo size, four times
    bases += (9_800_000,)  # the attrition diagnosis of the long-term cells (a pilot)
    bases += (9_900_000,)  # the eighth freeze: long-term cells with a reference-year record
    bases += (10_000_000,)  # the long-term chronic-absence cells under both fits (a pilot)
    ranges = [
        {fam.family_seed(f, i, base) for f in fam.FAMILIES for i in range(10_000)} for base in bases
    ]
    assert sum(len(r) for r in ranges) == len(set().union(*ranges))
    # the pilots that found the pre-trend tests' leak (validation/README.md) lie outside them
    # (and 9,300,002: the bounds' script run once before its freeze, nothing chosen on it)
    assert not {9_300_000, 9_300_001, 9_300_002} & set().union(*ranges)
    repeat = _validation_script("long_term_repeat")
    assert repeat.SEED_BASE in bases
    repeat_range = ranges[bases.index(repeat.SEED_BASE)]
    assert {repeat._seed(f, i) for f in repeat.FAMILY_NAMES for i in range(10_000)} <= repeat_range
    assert min(min(r) for r in ranges) > max(max(r) for r in used)
    attrition = _validation_script("pilot/long_term_attrition")
    assert attrition.SEED_BASE in bases
    assert _validation_script("pilot/long_term_chronic_reference").SEED_BASE in bases
    eighth = _validation_script("long_term_reference_year")
    assert eighth.SEED_BASE in bases
    eighth_range = ranges[bases.index(eighth.SEED_BASE)]
    assert {eighth._seed(f, i) for f in eighth.FAMILY_NAMES for i in range(10_000)} <= eighth_range
    # pilots choose nothing that is then validated on their own seeds: the long-term
    # censoring pilot's seeds lie between the other scripts' and every held-out range
    spec = importlib.util.spec_from_file_location(
        "long_term_censoring", ROOT / "validation" / "pilot" / "long_term_censoring.py"
    )
    pilot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pilot)
    pilot_seeds = {pilot.pilot_seed(f, i) for f in pilot.PILOT_FAMILIES for i in range(10_000)}
    assert len(pilot_seeds) == 10_000 * len(pilot.PILOT_FAMILIES)
    assert max(max(r) for r in used) < min(pilot_seeds)
    assert max(pilot_seeds) < min(min(r) for r in ranges)
    assert "no_effect_hazard" not in pilot.fam.FAMILIES  # the pilot's family stays its own


def test_verdict_reads_the_long_term_cells_a_run_publishes():
    """A cohort below privacy.min_treated is counted in the long-term verdict but not in
    its published part: there only the large cohort's bias shows."""
    fam = _families_module()
    rng = np.random.default_rng(5)
    rows = []
    for _draw in range(40):
        common = {"family": "lists", "truth_itt": np.nan, "y0_shift": np.nan}
        for month in (1, 3):
            est = 5 + rng.normal()
            rows.append({**common, "estimand": "event_study", "group": "all", "cohort": "",
                         "rel_time": month, "truth": 5.0, "estimate": est, "std_error": 1.0,
                         "ci_lower": est - 2, "ci_upper": est + 2, "boot_ci_lower": np.nan,
                         "boot_ci_upper": np.nan, "band_covers_path": True,
                         "n_treated": 200})  # fmt: skip
        for cohort, n_treated, shift in (("small", 8, -4.0), ("large", 100, 0.1)):
            est = 6 + shift + 0.5 * rng.normal()
            rows.append({**common, "estimand": "long_term", "group": "all", "cohort": cohort,
                         "rel_time": 0, "truth": 6.0, "estimate": est, "std_error": 1.0,
                         "ci_lower": est - 2, "ci_upper": est + 2, "boot_ci_lower": np.nan,
                         "boot_ci_upper": np.nan, "band_covers_path": np.nan,
                         "n_treated": n_treated})  # fmt: skip
    verdict = fam.verdict(fam.summarise_cells(pd.DataFrame(rows))).iloc[0]
    assert verdict["lt_cells"] == 2 and verdict["lt_published_cells"] == 1
    assert verdict["lt_worst_bias_all"] > 3.5  # the small cohort
    assert verdict["lt_published_worst_bias"] < 0.5  # the large one only


def test_long_term_verdict_by_year_keeps_chronic_absence_apart():
    """The per-year verdict reads one estimand: the chronic-absence cells' large bias shows
    in ``long_term_chronic`` only, year by year, and only the published cohort counts in
    its published part."""
    fam = _families_module()
    rng = np.random.default_rng(6)
    rows = []
    for _draw in range(40):
        common = {"family": "hazard", "truth_itt": np.nan, "y0_shift": np.nan, "group": "all",
                  "boot_ci_lower": np.nan, "boot_ci_upper": np.nan, "band_covers_path": np.nan,
                  "std_error": 1.0}  # fmt: skip
        for estimand, shift in (("long_term", 0.0), ("long_term_chronic", 3.0)):
            for year in (0, 1):
                for cohort, n_treated in (("small", 8), ("large", 100)):
                    est = 6 + (shift if year == 1 else 0.0) + 0.3 * rng.normal()
                    rows.append({**common, "estimand": estimand, "cohort": cohort,
                                 "rel_time": year, "truth": 6.0, "estimate": est,
                                 "ci_lower": est - 2, "ci_upper": est + 2,
                                 "n_treated": n_treated})  # fmt: skip
    cells = fam.summarise_cells(pd.DataFrame(rows))
    rate = fam.long_term_verdict(cells, "long_term").set_index("years_after")
    chronic = fam.long_term_verdict(cells, "long_term_chronic").set_index("years_after")
    assert list(rate.index) == [0, 1] and (rate["cells"] == 2).all()
    assert (rate["published_cells"] == 1).all()
    assert (rate["worst_bias"] < 0.5).all() and (rate["beyond_3_mcse"] == 0).all()
    assert chronic.loc[0, "worst_bias"] < 0.5
    assert chronic.loc[1, "published_worst_bias"] > 2.5
    assert chronic.loc[1, "published_beyond_3_mcse"] == 1
    assert chronic.loc[1, "coverage"].startswith("0-")  # shifted by 3 with +-2 intervals
    text = fam._long_term_sections(cells)
    assert "`long_term_chronic`" in text and "`long_term`" in text


def test_the_bounds_summary_counts_coverage_and_leaves_out_draws_without_bounds():
    sd = _validation_script("sensitivity_draws")
    base = {"family": "lists", "source": "untreated", "method": "smoothness", "bound": 0.0,
            "rel_time": 1, "inference": "FLCI", "estimate": 1.0, "n_treated": 9,
            "estimable": True}  # fmt: skip
    draws = pd.DataFrame(
        [
            {**base, "seed": 1, "ci_lower": 0.5, "ci_upper": 2.0, "breakdown": 0.2, "truth": 1.5},
            {**base, "seed": 2, "ci_lower": -1.0, "ci_upper": 1.0, "breakdown": 0.0, "truth": 1.5},
            {**base, "seed": 3, "ci_lower": np.nan, "ci_upper": np.nan, "breakdown": np.nan,
             "truth": 1.5},
            {"family": "lists", "seed": 4, "estimable": False},
        ]
    )  # fmt: skip
    cells = sd.summarise_bounds(draws)
    assert len(cells) == 1
    row = cells.iloc[0]
    # three estimable draws; the interval not computed counts as not covering
    assert row["draws"] == 3
    assert row["coverage"] == pytest.approx(1 / 3)
    assert row["excludes_zero"] == pytest.approx(1 / 3)
    assert row["coverage_mcse"] == pytest.approx(np.sqrt(1 / 3 * 2 / 3 / 3))
    assert row["median_breakdown"] == pytest.approx(0.1)
    # the summary's header gives the MC standard error at the draws it has (3 here)
    assert sd._coverage_se_words(cells, 1) == "MC SE about 12.6 at 3 draws"
