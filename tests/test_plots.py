"""Figures: tidy steps, signed Love plot, forest plot, and no text overprinted."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from leapresearch.publish import plots  # noqa: E402
from leapresearch.publish.outputs import write_figure  # noqa: E402


def love_input() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "covariate": ["a", "b", "c", "d"],
            "used_in_matching": [True, True, False, True],
            "type": ["continuous", "binary", "continuous", "binary"],
            "smd_before": [0.5, -1.2, np.nan, 0.5],
            "smd_after": [0.02, -0.05, 0.3, 0.01],
        }
    )


def test_tidy_love_plot_is_signed_and_ordered():
    tidy = plots.tidy_love_plot(love_input())
    assert len(tidy) == 8
    assert list(tidy.columns[:5]) == ["covariate", "label", "sample", "smd", "ordered"]
    assert list(tidy["sample"].cat.categories) == ["before", "after"]
    pos = tidy.drop_duplicates("covariate").set_index("covariate")["ordered"]
    # largest |SMD before| at the top, ties by name (a above d), NaN at the bottom
    assert pos.to_dict() == {"b": 3, "a": 2, "d": 1, "c": 0}
    after = tidy[tidy["sample"] == "after"].set_index("covariate")["smd"]
    assert after["b"] == pytest.approx(-0.05)  # the sign is kept
    with pytest.raises(ValueError, match="smd_after"):
        plots.tidy_love_plot(love_input().drop(columns="smd_after"))


def test_plot_love_draws_signed_points_and_both_thresholds():
    tidy = plots.tidy_love_plot(love_input())
    fig, ax = plt.subplots()
    assert plots.plot_love(tidy, ax=ax) is ax
    assert len(ax.collections) == 2
    xs = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections])
    assert (xs[~np.isnan(xs)] < 0).any()  # negative differences are drawn as such
    lines = {round(float(line.get_xdata()[0]), 2) for line in ax.get_lines()}
    assert {-0.25, -0.1, 0.0, 0.1, 0.25} <= lines
    plt.close(fig)
    with pytest.raises(ValueError, match="thresholds"):
        plots.plot_love(tidy, thresholds=(-1,))


def _es() -> pd.DataFrame:
    rows = []
    for g in ("grade_band:9-12", "all", "grade_band:6-12", "grade_band:PK-5", "grade_band:6-8"):
        for m in range(-3, 4):
            if m != -1:
                rows.append((g, m, 1.0 * m, 1.0 * m - 1, 1.0 * m + 1, 50))
    cols = ["group", "rel_time", "estimate", "ci_lower", "ci_upper", "n_treated"]
    return pd.DataFrame(rows, columns=cols)


def test_grade_band_panels_include_6_12_in_reading_order():
    tidy = plots.tidy_event_study_family(_es(), "grade_band")
    order = list(dict.fromkeys(tidy["group"]))
    assert order == ["grade_band:PK-5", "grade_band:6-8", "grade_band:9-12", "grade_band:6-12"]
    fig = plots.plot_event_study_panels(tidy)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["Grades PK-5", "Grades 6-8", "Grades 9-12", "Grades 6-12"]
    plt.close(fig)


def _es_with_band() -> pd.DataFrame:
    es = _es()
    post = es["rel_time"].between(0, 2)
    es["band_lower"] = np.where(post, es["ci_lower"] - 0.5, np.nan)
    es["band_upper"] = np.where(post, es["ci_upper"] + 0.5, np.nan)
    return es


def test_tidy_event_study_carries_the_band_when_the_table_has_it():
    tidy = plots.tidy_event_study(_es_with_band(), groups=("all", "grade_band:PK-5"))
    assert list(tidy.columns) == [
        "group", "label", "rel_time", "estimate", "ci_lower", "ci_upper", "band_lower",
        "band_upper",
    ]  # fmt: skip
    a = tidy.loc[tidy["group"] == "all"].set_index("rel_time")
    assert a.index.tolist() == [-3, -2, -1, 0, 1, 2, 3]
    assert a.loc[-1, "estimate"] == 0 and a.loc[-1, ["band_lower", "band_upper"]].isna().all()
    assert a.loc[[0, 1, 2], "band_lower"].tolist() == [-1.5, -0.5, 0.5]
    assert a.loc[[-3, -2, 3], ["band_lower", "band_upper"]].isna().all(axis=None)
    # a table without the band (e.g. an older run) gives the old layout
    plain = plots.tidy_event_study(_es(), groups=("all",))
    assert "band_lower" not in plain.columns and len(plain) == 7
    family = plots.tidy_event_study_family(_es_with_band(), "grade_band")
    assert family["band_upper"].notna().sum() == 4 * 3


def _legend_texts(legend) -> list[str]:
    return [t.get_text() for t in legend.get_texts()] if legend else []


def test_single_group_plot_draws_the_band_behind_the_pointwise_interval():
    fig, ax = plt.subplots()
    plots.plot_event_study(plots.tidy_event_study(_es_with_band()), ax=ax)
    fills = [
        c for c in ax.collections if c.get_label() in (plots.BAND_LABEL, plots.POINTWISE_LABEL)
    ]
    assert [c.get_label() for c in fills] == [plots.BAND_LABEL, plots.POINTWISE_LABEL]
    assert fills[0].get_alpha() < fills[1].get_alpha()  # lighter, and drawn first (behind)
    assert {plots.BAND_LABEL, plots.POINTWISE_LABEL} <= set(_legend_texts(ax.get_legend()))
    plt.close(fig)
    # several groups: error bars only, no band
    fig, ax = plt.subplots()
    tidy = plots.tidy_event_study(_es_with_band(), groups=("all", "grade_band:PK-5"))
    plots.plot_event_study(tidy, ax=ax)
    assert plots.BAND_LABEL not in _legend_texts(ax.get_legend())
    assert not [c for c in ax.collections if c.get_label() == plots.BAND_LABEL]
    plt.close(fig)


def test_panels_draw_the_band_and_name_both_ribbons():
    fig = plots.plot_event_study_panels(
        plots.tidy_event_study_family(_es_with_band(), "grade_band")
    )
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert all(
        [c.get_label() for c in ax.collections] == [plots.BAND_LABEL, plots.POINTWISE_LABEL]
        for ax in shown
    )
    assert _legend_texts(fig.legends[0]) == [plots.POINTWISE_LABEL, plots.BAND_LABEL]
    plt.close(fig)
    fig = plots.plot_event_study_panels(plots.tidy_event_study_family(_es(), "grade_band"))
    assert not fig.legends
    plt.close(fig)


def test_forest_keeps_a_row_for_every_group():
    es = _es()
    es.loc[es["group"] == "grade_band:6-8", "estimate"] = np.nan
    tidy = plots.tidy_forest(es, rel_time=3)
    assert tidy["group"].iloc[0] == "all" and len(tidy) == 5
    fig, ax = plt.subplots()
    plots.plot_forest(tidy, ax=ax)
    texts = [t.get_text() for t in ax.get_yticklabels()]
    assert "Grades 6-8 (‡)" in texts  # a suppressed subgroup is shown as such
    plt.close(fig)


def test_forest_panel_by_estimate_with_shrunken_rows_beside_the_raw_ones():
    es = _es().assign(std_error=1.0)
    es.loc[es["group"] == "grade_band:9-12", "std_error"] = 4.0
    pk5 = es["group"] == "grade_band:PK-5"
    es.loc[pk5, ["estimate", "ci_lower", "ci_upper"]] = [9.0, 8.0, 10.0]
    es.loc[es["group"] == "grade_band:6-8", "estimate"] = np.nan
    tidy = plots.tidy_forest(
        es, rel_time=3, families=["grade_band"], pooled=False, suppressed=False,
        order="estimate", shrink=True,
    )  # fmt: skip
    raw = tidy[tidy["kind"] == "raw"]
    # the pooled groups and the suppressed one are left out; the largest estimate on top
    assert raw["group"].tolist() == ["grade_band:PK-5", "grade_band:9-12"]
    assert raw["level"].tolist() == ["PK-5", "9-12"] and raw["position"].tolist() == [0, 1]
    shrunk = tidy[tidy["kind"] == "shrunken"].set_index("group")
    assert shrunk["position"].to_dict() == {"grade_band:PK-5": 0, "grade_band:9-12": 1}
    fig, ax = plt.subplots()
    plots.plot_forest(tidy, ax=ax, names="level")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["PK-5", "9-12"]
    assert _legend_texts(ax.get_legend()) == ["raw", "shrunken"]
    plt.close(fig)
    with pytest.raises(ValueError, match="order"):
        plots.tidy_forest(es, rel_time=3, order="alphabetical")


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_the_provenance_stamp_never_overprints_the_axis_labels(tmp_path):
    fig, ax = plt.subplots(figsize=(7, 4))
    plots.plot_event_study(plots.tidy_event_study(_es(), groups=("all",)), ax=ax)
    write_figure(fig, "f", tmp_path, stamp="leapresearch · vintage x · commit abc")
    renderer = fig.canvas.get_renderer()
    stamp = fig.texts[-1].get_window_extent(renderer)
    others = [ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels()]
    assert all(not _overlaps(stamp, t.get_window_extent(renderer)) for t in others)
    assert stamp.y1 <= ax.xaxis.label.get_window_extent(renderer).y0
    assert (tmp_path / "figures" / "f.png").exists()
    plt.close(fig)


def _stamped_files(folder, layout):
    fig, ax = plt.subplots(figsize=(7, 4), layout=layout)
    plots.plot_event_study(plots.tidy_event_study(_es(), groups=("all",)), ax=ax)
    paths = write_figure(fig, "f", folder, stamp="leapresearch · vintage x · commit abc")
    plt.close(fig)
    return paths


@pytest.mark.parametrize("layout", ["constrained", None])
def test_a_figure_is_saved_with_its_stamp_the_same_bytes_each_time(tmp_path, layout):
    """Both files come from one layout and one tight box: the PNG holds the stamp (grey
    pixels in its bottom rows, nothing cut off at its edges), and the same figure gives
    the same PNG and SVG bytes."""
    from PIL import Image

    first = _stamped_files(tmp_path / "a", layout)
    again = _stamped_files(tmp_path / "b", layout)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    pixels = np.asarray(Image.open(first[0]).convert("L"))
    grey = (pixels > 60) & (pixels < 200)
    assert grey[-25:].any(), "the stamp is in the bottom margin of the PNG"
    assert (pixels[:, :2] == 255).all() and (pixels[-2:] == 255).all(), "a white margin"
    assert "leapresearch · vintage x · commit abc" in first[1].read_text(encoding="utf-8")


def test_designs_in_one_panel():
    es = _es()
    naive = es[["group", "rel_time", "estimate"]].assign(estimate=lambda d: d["estimate"] + 5)
    tidy = plots.tidy_designs(naive, es, None)
    assert list(dict.fromkeys(tidy["design"])) == [
        "Naive before/after",
        "Matched comparison (main)",
    ]
    assert tidy.loc[tidy["design"] == "Naive before/after", "ci_lower"].isna().all()
    fig, ax = plt.subplots()
    plots.plot_designs(tidy, ax=ax)
    assert len(ax.get_legend().get_texts()) == 2
    plt.close(fig)


def test_long_term_adds_the_reference_year_and_orders_cohorts_in_time():
    rows = []
    for cohort in ("2021-22", "summer-2021", "2020-21"):
        for k in (-2, 0, 1):
            rows.append(("all", cohort, k, "attendance_rate", 1.0 * k, 0.5 * k - 1, 0.5 * k + 1))
    cols = ["group", "cohort", "years_after", "outcome", "estimate", "ci_lower", "ci_upper"]
    lt = pd.DataFrame(rows, columns=cols).assign(school_year="x")
    tidy = plots.tidy_long_term(lt)
    assert list(dict.fromkeys(tidy["cohort"])) == ["2020-21", "summer-2021", "2021-22"]
    ref = tidy[tidy["years_after"] == -1]
    assert len(ref) == 3 and (ref["estimate"] == 0).all() and ref["ci_lower"].isna().all()
    fig, ax = plt.subplots()
    plots.plot_long_term(tidy, ax=ax)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "School year 2020-21",
        "Summer 2021",
        "School year 2021-22",
    ]
    plt.close(fig)
