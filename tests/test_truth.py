"""Issue 23: the within-caliper estimate beside the headline, and the truth beside the estimate.

``event_study.csv`` has the group ``within_caliper`` (the visited students with a comparison
inside the caliper) without changing any other row; on simulated data whose marker records
the truth, ``truth_comparison.csv`` sets every published estimate beside the simulator's
truth, and on data without the marker the truth is never read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leapresearch.analysis.event_studies import estimate_event_studies
from leapresearch.analysis.sample import prepare
from leapresearch.analysis.specifications import estimate_specifications
from leapresearch.analysis.truth import (
    TRUTH_COMPARISON_COLUMNS,
    estimate_truth_comparison,
    long_term_against_truth,
    truth_comparison,
)
from leapresearch.config import load_config
from leapresearch.data.contract import read_raw_tables
from leapresearch.data.simulate import SIMULATION_MARKER, read_truth, write_simulation
from leapresearch.estimation.subgroups import GROUP_WITHIN_CALIPER
from leapresearch.publish import labels, narrative
from tests.conftest import PROCEDURE_OVERRIDE, _simulated


@pytest.fixture(scope="module")
def truth_folder(tmp_path_factory) -> Path:
    """Simulated data written with their truth (the marker records where it is)."""
    root = tmp_path_factory.mktemp("truth")
    write_simulation(_simulated(), root / "data", truth_path=root / "truth" / "sim.json")
    return root / "data"


@pytest.fixture(scope="module")
def prepared(truth_folder):
    # the small test data: publish estimates of a few visited students
    config = load_config("demo", data_dir=truth_folder, overrides=["privacy.min_treated: 6"])
    return prepare(read_raw_tables(truth_folder), config)


@pytest.fixture(scope="module")
def fitted(prepared):
    return estimate_event_studies(prepared, subgroups=("grade_band",), within_caliper=True)


def test_the_marker_records_the_truth_relative_to_the_data(truth_folder):
    marker = json.loads((truth_folder / SIMULATION_MARKER).read_text())
    assert marker["truth"] == "../truth/sim.json"
    truth = read_truth(truth_folder)
    assert truth["seed"] == marker["seed"] and "event_study" in truth


def test_no_marker_no_truth_even_beside_a_truth_file(tmp_path, truth_folder):
    real = tmp_path / "data"
    shutil.copytree(truth_folder, real)
    shutil.copytree(truth_folder.parent / "truth", tmp_path / "truth")
    assert read_truth(real) is not None
    (real / SIMULATION_MARKER).unlink()
    assert read_truth(real) is None


def test_a_truth_of_other_data_is_refused(tmp_path, truth_folder):
    data = tmp_path / "data"
    shutil.copytree(truth_folder, data)
    truth = json.loads((truth_folder.parent / "truth" / "sim.json").read_text())
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth" / "sim.json").write_text(json.dumps({**truth, "seed": truth["seed"] + 1}))
    with pytest.raises(ValueError, match="not the truth of these data"):
        read_truth(data)


def test_within_caliper_rows_add_to_the_table_and_change_no_other_row(prepared, fitted):
    table, results = fitted
    without, _ = estimate_event_studies(prepared, subgroups=("grade_band",))
    others = table.loc[table["group"] != GROUP_WITHIN_CALIPER].reset_index(drop=True)
    pd.testing.assert_frame_equal(others, without, check_exact=True)
    assert GROUP_WITHIN_CALIPER not in results  # no pre-trend test or bound for it
    within, far = prepared.caliper_split()
    visited = int((prepared.units["treated"] == 1).sum())
    assert len(far) > 0 and len(within) + len(far) == visited
    rows = table.loc[table["group"] == GROUP_WITHIN_CALIPER].set_index("rel_time")
    first = table.loc[table["group"] == "all"].set_index("rel_time")
    assert rows.loc[0, "n_treated"] == first.loc[0, "n_treated"] - len(far)
    assert (rows["n_treated"] <= first.loc[rows.index, "n_treated"]).all()
    # a family of one: Holm leaves its p-values as they are
    shown = rows["n_treated"] >= prepared.config.privacy.min_treated
    assert shown.any()
    np.testing.assert_array_equal(rows.loc[shown, "p_value_adjusted"], rows.loc[shown, "p_value"])


def test_within_caliper_rows_are_the_outside_caliper_drop_specification(prepared, fitted):
    table, _ = fitted
    spec = estimate_specifications(prepared, names=["outside_caliper_drop"])
    drop = spec.loc[spec["group"] == "all"].set_index("rel_time")
    rows = table.loc[table["group"] == GROUP_WITHIN_CALIPER].set_index("rel_time")
    months = list(prepared.config.analysis.report_rel_times)
    assert len(drop) == len(months)
    for col in ("estimate", "std_error", "n_treated"):
        np.testing.assert_allclose(rows.loc[months, col], drop.loc[months, col], rtol=1e-10)


def test_truth_comparison_on_simulated_data(prepared, fitted):
    table = fitted[0]
    truth = read_truth(prepared.config.data_path)
    out = truth_comparison(table, None, truth, prepared.config)
    assert list(out.columns) == TRUTH_COMPARISON_COLUMNS
    assert set(out["exhibit"]) == {"event_study"}
    assert GROUP_WITHIN_CALIPER not in set(out["group"])  # the truth has no such group
    assert {"all", "grade_band:PK-5"} <= set(out["group"])
    lo, hi = prepared.config.analysis.window
    assert out["rel_time"].between(lo + 1, hi - 1).all()
    row = out.loc[(out["group"] == "all") & (out["rel_time"] == 3)].iloc[0]
    assert row["truth"] == pytest.approx(truth["event_study"]["all"]["3"])
    assert row["covered"] == (row["ci_lower"] <= row["truth"] <= row["ci_upper"])
    assert row["error"] == pytest.approx(row["estimate"] - row["truth"])
    # only published estimates are compared
    assert (out["n_treated"] >= prepared.config.privacy.min_treated).all()
    sentence = narrative.describe_truth_comparison(out, rel_times=(1, 3, 6, 9))
    assert f"of the {len(out)} event-study estimates" in sentence


def test_truth_comparison_has_no_rows_without_the_marker(tmp_path, prepared, truth_folder):
    real = tmp_path / "data"
    shutil.copytree(truth_folder, real)
    (real / SIMULATION_MARKER).unlink()
    config = prepared.config.model_copy(update={"data_dir": str(real)})
    alone = estimate_truth_comparison(
        type(prepared)(**{**vars(prepared), "config": config}), event_study=pd.DataFrame()
    )
    assert alone.empty and list(alone.columns) == TRUTH_COMPARISON_COLUMNS


def test_the_run_publishes_truth_comparison_only_on_simulated_data(truth_folder, run_a, cli_cache):
    from leapresearch.analysis.runner import evaluate
    from leapresearch.session import _read_entry

    overrides = ["identification.specifications: []", PROCEDURE_OVERRIDE]
    config = load_config("demo", data_dir=truth_folder, overrides=overrides)
    run = evaluate(read_raw_tables(truth_folder), config)
    table = run.tables["truth_comparison"]
    assert set(table["exhibit"]) <= {"event_study", "long_term"} and len(table)
    es = run.tables["event_study"]
    assert (es["group"] == GROUP_WITHIN_CALIPER).any()
    # run_a: `leapresearch run` of simulated data whose marker records no truth
    assert (run_a / "tables" / "event_study.csv").exists()
    assert not (run_a / "tables" / "truth_comparison.csv").exists()
    stored = [p for p in cli_cache.glob("result-*-truth_comparison") if ".tmp" not in p.name]
    assert stored  # stored for the notebooks: nothing to show
    assert all(_read_entry(p).empty for p in stored)


def test_within_caliper_is_a_family_of_its_own_right_after_all():
    assert labels.family_of(GROUP_WITHIN_CALIPER) == GROUP_WITHIN_CALIPER
    assert labels.family_of("all") == "all"
    order = labels.sort_groups(["grade_band:PK-5", GROUP_WITHIN_CALIPER, "all"])
    assert order == ["all", GROUP_WITHIN_CALIPER, "grade_band:PK-5"]


def test_front_page_sentence_counts_the_students_outside_the_caliper():
    es = pd.DataFrame(
        {
            "group": ["all", GROUP_WITHIN_CALIPER],
            "rel_time": [9, 9],
            "estimate": [13.0, 11.0],
            "ci_lower": [11.0, 9.0],
            "ci_upper": [15.0, 13.0],
        }
    )
    ms = pd.DataFrame({"treated": [300, 100], "matched_outside_caliper": [60, 20]})
    text = narrative.describe_within_caliper(es, ms, rel_time=9)
    assert text.startswith("80 of the 400 visited students (20%)")
    assert "+11.0 pp (95% CI 9.0 to 13.0), against +13.0 pp" in text
    none = narrative.describe_within_caliper(es, ms.assign(matched_outside_caliper=0))
    assert none.startswith("Every one of the 400 visited students")


def test_the_cache_of_simulated_data_is_not_the_cache_of_the_same_tables_without_marker(
    tmp_path, truth_folder
):
    from leapresearch.session import cache_path

    real = tmp_path / "data"
    shutil.copytree(truth_folder, real)
    (real / SIMULATION_MARKER).unlink()
    inputs = {"students": {"sha256": "x"}}
    simulated = cache_path(inputs, load_config("demo", data_dir=truth_folder))
    assert cache_path(inputs, load_config("demo", data_dir=real)) != simulated


def test_long_term_cells_meet_the_truth_of_the_estimand_the_design_fits():
    """With ``long_term.require_reference_year`` a long-term cell is compared with the
    simulator's truth over the visited students enrolled in the reference school year;
    without it, with the truth over every visited student; a truth file without the first
    compares no long-term cell rather than the wrong estimand."""
    from leapresearch.analysis.base import with_setting

    cell = {"group": "all", "cohort": "Summer 2021", "school_year": "2021-22"}
    long_term = pd.DataFrame(
        [{**cell, "outcome": "attendance_rate", "years_after": 0, "estimate": 5.0,
          "std_error": 1.0, "ci_lower": 3.0, "ci_upper": 7.0, "n_treated": 200,
          "n_comparison": 400}]
    )  # fmt: skip
    truth = {
        "long_term": [{**cell, "outcome": "attendance_rate", "att": 4.0}],
        "long_term_with_reference": [{**cell, "outcome": "attendance_rate", "att": 4.5}],
    }
    required = load_config("demo")
    assert required.long_term.require_reference_year  # the default
    every = with_setting(required, "long_term", require_reference_year=False)
    assert long_term_against_truth(long_term, truth, required)["truth"].tolist() == [4.5]
    assert long_term_against_truth(long_term, truth, every)["truth"].tolist() == [4.0]
    older = {"long_term": truth["long_term"]}
    assert long_term_against_truth(long_term, older, required).empty
