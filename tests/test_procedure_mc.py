"""The Monte Carlo of the whole-procedure intervals (``validation/procedure_mc.py``).

A replication of a tiny population (a twentieth of the demo, 10 bootstrap draws) through
the command line, into a temporary folder, with seeds moved out of the held-out range; and
the summary's coverage on a constructed frame whose answer is known.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    sys.path.insert(0, str(ROOT / "validation"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "validation" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pm = _module("procedure_mc")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One replication of ``lists`` through ``monte_carlo.py --procedure-draws 10``."""
    out = tmp_path_factory.mktemp("proc")
    mp = pytest.MonkeyPatch()
    mp.setattr(pm, "PROCEDURE_SEED_BASE", 540_000)  # not the held-out seeds
    mp.setitem(sys.modules, "procedure_mc", pm)
    argv = ["--families", "lists", "--draws", "1", "--sample-fraction", "0.05"]
    argv += ["--procedure-draws", "10", "--workers", "1", "--out", str(out)]
    try:
        code = pm.mc.main(argv)
    finally:
        mp.undo()
    return code, out


def test_the_option_records_both_coverages_and_freezes_its_design(run):
    code, out = run
    assert code == 0
    design = json.loads((out / "design.json").read_text())
    assert design["procedure_draws"] == 10 and design["seeds"]["lists"][0] == 540_000
    rows = pd.read_csv(next((out / "draws").rglob("lists-540000.csv")))
    assert set(rows["procedure_draws"]) == {10}
    a = rows.loc[rows["group"] == "all"].set_index("rel_time")
    assert list(a.index) == [1, 3, 6, 9]
    assert (a["procedure_std_error"] > 0).all() and (a["std_error"] > 0).all()
    for prefix, name in (("", "covered"), ("procedure_", "procedure_covered")):
        inside = (a[f"{prefix}ci_lower"] <= a["truth"]) & (a["truth"] <= a[f"{prefix}ci_upper"])
        assert (a[name] == inside.astype(float)).all()
    assert a["band_covers_path"].isin([0.0, 1.0]).all()
    assert a["procedure_band_covers_path"].isin([0.0, 1.0]).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["procedure_draws"] == 10 and len(summary["cells"]) == len(rows)
    assert "--procedure-draws 10" in (out / "summary.md").read_text()


def test_the_bayesian_scheme_runs_on_its_own_seeds_and_freezes_its_scheme(tmp_path):
    mp = pytest.MonkeyPatch()
    mp.setattr(pm, "BAYESIAN_SEED_BASE", 545_000)  # not the held-out seeds
    mp.setitem(sys.modules, "procedure_mc", pm)
    argv = ["--families", "lists", "--draws", "1", "--sample-fraction", "0.05"]
    argv += ["--procedure-draws", "10", "--procedure-scheme", "bayesian", "--workers", "1"]
    try:
        assert pm.mc.main([*argv, "--out", str(tmp_path)]) == 0
    finally:
        mp.undo()
    design = json.loads((tmp_path / "design.json").read_text())
    assert design["procedure_scheme"] == "bayesian" and design["seeds"]["lists"][0] == 545_000
    rows = pd.read_csv(next((tmp_path / "draws").rglob("lists-545000.csv")))
    a = rows.loc[rows["group"] == "all"].set_index("rel_time")
    assert (a["procedure_std_error"] > 0).all()
    assert "Bayesian draws" in (tmp_path / "summary.md").read_text()


def test_a_resumed_run_refuses_another_number_of_bootstrap_draws(run):
    _, out = run
    argv = ["--families", "lists", "--draws", "1", "--sample-fraction", "0.05"]
    argv += ["--procedure-draws", "20", "--out", str(out), "--summary-only"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pm, "PROCEDURE_SEED_BASE", 540_000)
        mp.setitem(sys.modules, "procedure_mc", pm)
        assert pm.mc.main(argv) == 2


def test_every_draw_records_the_code_it_ran_on_and_a_summary_refuses_other_code(run, tmp_path):
    """The incident of issue 23's validation: a process pool re-imported edited code between
    batches. Each draw records its process's code digest; a summary refuses a draw of other
    code, and a resume refuses to add draws from code other than the freeze's."""
    import shutil

    fm = pm.fm
    _, out = run
    design = json.loads((out / "design.json").read_text())
    assert design["code_digest"] == fm.code_digest()
    draw = next((out / "draws").rglob("lists-540000.csv"))
    assert set(pd.read_csv(draw)[fm.DIGEST_COLUMN]) == {design["code_digest"]}
    summary = json.loads((out / "summary.json").read_text())
    assert fm.DIGEST_COLUMN not in summary["cells"][0]  # recorded, not summarised
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    argv = ["--families", "lists", "--draws", "1", "--sample-fraction", "0.05"]
    argv += ["--procedure-draws", "10", "--out", str(copy)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pm, "PROCEDURE_SEED_BASE", 540_000)
        mp.setitem(sys.modules, "procedure_mc", pm)
        assert pm.mc.main([*argv, "--summary-only"]) == 0
        edited = next((copy / "draws").rglob("lists-540000.csv"))
        frame = pd.read_csv(edited)
        frame[fm.DIGEST_COLUMN] = "0" * 16  # as if a worker had re-imported edited code
        frame.to_csv(edited, index=False)
        assert pm.mc.main([*argv, "--summary-only"]) == 2
        # a freeze of other code: no new draw is added to it
        frozen = json.loads((copy / "design.json").read_text())
        (copy / "design.json").write_text(json.dumps({**frozen, "code_digest": "1" * 16}))
        edited.unlink()
        assert pm.mc.main([*argv, "--workers", "1"]) == 2
        assert not edited.exists()


def test_the_code_digest_changes_with_any_byte_of_the_design_s_code(tmp_path):
    fm = pm.fm
    (tmp_path / "leapresearch" / "sub").mkdir(parents=True)
    (tmp_path / "params").mkdir()
    (tmp_path / "validation").mkdir()
    (tmp_path / "leapresearch" / "sub" / "a.py").write_text("x = 1\n")
    (tmp_path / "params" / "base.yaml").write_text("a: 1\n")
    (tmp_path / "validation" / "v.py").write_text("")
    (tmp_path / "README.md").write_text("not code")
    first = fm.code_digest.__wrapped__(tmp_path)
    (tmp_path / "README.md").write_text("edited")  # not the design's code
    assert fm.code_digest.__wrapped__(tmp_path) == first
    for path, text in (("leapresearch/sub/a.py", "x = 2\n"), ("params/base.yaml", "a: 2\n"),
                       ("validation/v.py", "#")):  # fmt: skip
        before = (tmp_path / path).read_text()
        (tmp_path / path).write_text(text)
        assert fm.code_digest.__wrapped__(tmp_path) != first, path
        (tmp_path / path).write_text(before)
    assert fm.code_digest.__wrapped__(tmp_path) == first
    # draws of two codes under a freeze that recorded none: refused all the same
    files = [Path("a.csv"), Path("b.csv")]
    mixed = pd.DataFrame({fm.DIGEST_COLUMN: ["x" * 16, "y" * 16]})
    with pytest.raises(ValueError, match=r"b\.csv"):
        fm.check_code_digests(mixed, files, None)
    fm.check_code_digests(mixed.iloc[:1], files[:1], None)  # one code: fine
    fm.check_code_digests(pd.DataFrame({"x": [1, 2]}), files, "z" * 16)  # older draws


def _constructed() -> pd.DataFrame:
    """Five replications of one cell, truth 1: coverage known by construction."""
    est = np.array([1.0, 1.5, 3.0, 0.2, 1.0])
    se = np.array([1.0, 0.1, 0.5, 0.2, 1.0])  # analytic: covers in 1, 5 (and 4? 0.2+0.39<1)
    pse = np.array([1.2, 0.4, 1.5, np.nan, 2.0])  # procedure: 1, 2, 3 cover; 4 missing
    z = 1.959964
    return pd.DataFrame(
        {
            "family": "lists",
            "group": "all",
            "rel_time": 1,
            "seed": range(5),
            "truth": 1.0,
            "estimate": est,
            "std_error": se,
            "ci_lower": est - z * se,
            "ci_upper": est + z * se,
            "boot_ci_lower": est - z * se,
            "boot_ci_upper": est + z * se,
            "procedure_std_error": pse,
            "procedure_ci_lower": est - z * pse,
            "procedure_ci_upper": est + z * pse,
            "band_covers_path": [1.0, 0.0, 0.0, 0.0, 1.0],
            "procedure_band_covers_path": [1.0, 1.0, 0.0, np.nan, 1.0],
            "procedure_draws": 10,
        }
    ).assign(
        covered=lambda d: pm._covers(d["ci_lower"], d["ci_upper"], d["truth"]),
        procedure_covered=lambda d: pm._covers(
            d["procedure_ci_lower"], d["procedure_ci_upper"], d["truth"]
        ),
    )


def test_summary_counts_coverage_over_the_replications_with_an_interval():
    d = _constructed()
    assert d["covered"].tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert d["procedure_covered"].tolist()[:3] == [1.0, 1.0, 1.0]
    assert np.isnan(d["procedure_covered"].iloc[3]) and d["procedure_covered"].iloc[4] == 1.0
    c = pm.summarise_coverage(d).iloc[0]
    assert c["draws"] == 5 and c["procedure_replications"] == 4
    assert c["coverage"] == pytest.approx(0.4)
    assert c["coverage_mcse"] == pytest.approx(np.sqrt(0.4 * 0.6 / 5))
    assert c["procedure_coverage"] == pytest.approx(1.0) and c["procedure_coverage_mcse"] == 0
    assert c["band_coverage"] == pytest.approx(0.4)
    assert c["procedure_band_coverage"] == pytest.approx(0.75)
    assert c["procedure_band_mcse"] == pytest.approx(np.sqrt(0.75 * 0.25 / 4))
    sd = np.std([1.0, 1.5, 3.0, 0.2, 1.0], ddof=1)
    assert c["sd_over_analytic"] == pytest.approx(sd / 0.56)
    assert c["procedure_over_analytic"] == pytest.approx(np.mean([1.2, 0.4, 1.5, 2.0]) / 0.56)


def test_target_sentence_follows_the_numbers():
    d = _constructed()
    cells = pm.summarise_coverage(d)
    text = pm.target_check(cells)
    assert "100% to 100%; 1 of 1 cells outside 92-98%" in text and "not met" in text
    cells.loc[:, "procedure_coverage"] = 0.95
    assert "0 of 1 cells outside" in pm.target_check(cells)
    assert "target is met" in pm.target_check(cells)


def test_procedure_seeds_are_new_and_held_out():
    fam = pm.fm
    new = {pm.procedure_seed(f, i) for f in fam.FAMILIES for i in range(10_000)}
    old = {fam.family_seed(f, i) for f in fam.FAMILIES for i in range(10_000)}
    assert min(new) == 7_500_000 and not new & old and len(new) == 10_000 * len(fam.FAMILIES)
    assert min(new) > max(old)
    bayes = {pm.procedure_seed(f, i, "bayesian") for f in fam.FAMILIES for i in range(10_000)}
    assert min(bayes) == 8_500_000 and not bayes & (new | old)
    # a new freeze's range (--seed-base): the adjustment's fallback, validation/README.md
    fallback = {
        pm.procedure_seed(f, i, "bayesian", 8_600_000) for f in fam.FAMILIES for i in range(10_000)
    }
    assert min(fallback) == 8_600_000 and not fallback & (new | old | bayes)


def test_fewer_bootstrap_draws_cost_the_interval_coverage():
    few, many = pm.finite_draws_coverage(20), pm.finite_draws_coverage(999)
    assert few < pm.finite_draws_coverage(99) < many < 0.951
    assert many > 0.945 and few < 0.94


def test_a_summary_takes_each_family_s_own_complete_draws(tmp_path):
    """A family run on in a later session of the same freeze may have more draws on disk
    than another: the summary takes each family's first k draws, not the smallest k of all
    (the fifth freeze's three families have 150 draws, the five run later 100)."""
    argv = ["--sample-fraction", "0.05", "--procedure-draws", "10", "--out", str(tmp_path)]
    both = ["--families", "lists", "no_effect", "--draws", "2", *argv]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pm, "PROCEDURE_SEED_BASE", 540_000)
        mp.setitem(sys.modules, "procedure_mc", pm)
        assert pm.mc.main(["--families", "lists", "--draws", "2", "--workers", "1", *argv]) == 0
        assert pm.mc.main([*both, "--summary-only"]) == 1  # no_effect has no draw yet
        assert pm.mc.main(["--families", "no_effect", "--draws", "1", "--workers", "1", *argv]) == 0
        assert pm.mc.main([*both, "--summary-only"]) == 0
    cells = pd.DataFrame(json.loads((tmp_path / "summary.json").read_text())["cells"])
    assert cells.groupby("family")["draws"].max().to_dict() == {"lists": 2, "no_effect": 1}
