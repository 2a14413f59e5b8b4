"""Pilot (validation/README.md): why does the whole-procedure bootstrap overstate the error.

V0 copies (the package's draws); V1 the same pscore, then comparison copies beyond the first
dropped before matching (no match to a copy of the same student); V2 = V1's matches with
comparisons weighted by their multiplicity within each visited student's match set; V3
(schools resampled) and V5 (exponential(1) school weights) with the full sample's matches
held fixed.
"""

import dataclasses
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import families as fm
import monte_carlo as mc

from leapresearch.analysis import procedure as pr
from leapresearch.analysis.base import with_setting
from leapresearch.analysis.event_studies import estimate_event_studies
from leapresearch.analysis.fitting import fit_group
from leapresearch.analysis.sample import prepare_matched
from leapresearch.design.matching.separation import remember_directions
from leapresearch.design.matching.sorting import _dense_codes, _int_lexsort
from leapresearch.design.stacking import subgroup_weights
from leapresearch.estimation.subgroups import GROUP_ALL, group_definitions


def copy_index(data, counts):
    """Copy number and cluster multiplicity of each row of a resampled draw."""
    frame = data.candidates.frame
    rep = counts[data.row_cluster]
    rows = np.repeat(np.arange(len(frame)), rep)
    copy = np.arange(rows.size) - np.repeat(np.cumsum(rep) - rep, rep)
    width = int(copy.max(initial=0)) + 1
    orig = frame["student"].to_numpy(np.int64)[rows]
    uniq, student = _dense_codes(data.student_rank[orig] * width + copy)
    order = _int_lexsort((student, frame["stack"].to_numpy()[rows]))
    return copy[order], rep[rows][order]


def mass_weights(units, pairs, treated_in_group, mass_by_student):
    """V2: comparisons weighted by their copies within each match set."""
    key = ["stack", "student"]
    sel = treated_in_group[key].drop_duplicates().rename(columns={"student": "treated_student"})
    p = pairs.merge(sel, on=["stack", "treated_student"])
    p = p.assign(m=mass_by_student.reindex(p["comparison_student"].to_numpy()).to_numpy())
    den = p.groupby(["stack", "treated_student"])["m"].transform("sum")
    p = p.assign(c=p["m"] / den)
    wc = p.groupby(["stack", "comparison_student"])["c"].sum().rename("w").reset_index()
    wc = wc.rename(columns={"comparison_student": "student"}).assign(treated=0)
    wt = sel.rename(columns={"treated_student": "student"}).assign(w=1.0, treated=1)
    w = pd.concat([wt, wc], ignore_index=True)
    u = units[["stack", "student", "treated"]].astype({"treated": int})
    return u.merge(w, on=["stack", "student", "treated"], how="left")["w"].fillna(0.0).to_numpy()


def fits(prepared, weight_fn=None):
    """The headline groups' estimates of ``prepared`` (own unit weights if given)."""
    units, pairs = prepared.units, prepared.matching.pairs
    out = {}
    for label, treated in group_definitions(prepared.attributes, ("grade_band",)):
        if weight_fn is not None:
            w = weight_fn(units, pairs, treated)
        elif label == GROUP_ALL:
            w = units["weight"].to_numpy(np.float64)
        else:
            w = subgroup_weights(units, pairs, treated)
        res = fit_group(prepared, prepared.stacked, w)
        if res is not None:
            out[label] = res.coefficients
    return out


def draw(data, d):
    """V0, V1 and V2 in resampled draw ``d``."""
    counts = pr.draw_counts(data.seed, d, data.n_clusters)
    panel, cand = pr.resampled_inputs(data, counts)
    copy, mass = copy_index(data, counts)
    remember_directions(data.separating)
    res = {}
    try:
        p0 = prepare_matched(panel, cand, data.config, pscore_start=data.pscore_start)
        res["V0"] = fits(p0)
        frame = cand.frame
        keep = frame["treated"].to_numpy() | (copy == 0)
        c1 = dataclasses.replace(cand, frame=frame.loc[keep].reset_index(drop=True))
        ps = p0.matching.pscore.loc[keep].reset_index(drop=True)
        p1 = prepare_matched(panel, c1, data.config, pscore=ps)
        res["V1"] = fits(p1)
        f1 = c1.frame
        mass_by_student = pd.Series(mass[keep], index=f1["student"].to_numpy())
        mass_by_student = mass_by_student[~mass_by_student.index.duplicated()]
        res["V2"] = fits(p1, lambda u, pairs, t: mass_weights(u, pairs, t, mass_by_student))
    except (ValueError, np.linalg.LinAlgError) as e:
        print("draw failed", d, e, file=sys.stderr)
    return res


def fixed_weights(units, pairs, treated_in_group, unit_mass):
    """Unit weights of the full sample's matches for cluster masses ``unit_mass``."""
    key = ["stack", "student"]
    sel = treated_in_group[key].drop_duplicates().rename(columns={"student": "treated_student"})
    p = pairs.merge(sel, on=["stack", "treated_student"])
    mc_ = unit_mass.reindex(
        pd.MultiIndex.from_arrays([p["stack"], p["comparison_student"]])
    ).to_numpy()
    mt_ = unit_mass.reindex(
        pd.MultiIndex.from_arrays([p["stack"], p["treated_student"]])
    ).to_numpy()
    p = p.assign(mc=mc_, mt=mt_)
    den = p.groupby(["stack", "treated_student"])["mc"].transform("sum")
    p = p.assign(c=np.where(den > 0, p["mt"] * p["mc"] / np.where(den > 0, den, 1), 0.0))
    wc = p.groupby(["stack", "comparison_student"])["c"].sum().rename("w").reset_index()
    wc = wc.rename(columns={"comparison_student": "student"}).assign(treated=0)
    t = (
        p.assign(ok=den > 0)
        .groupby(["stack", "treated_student"])
        .agg(mt=("mt", "first"), ok=("ok", "first"))
        .reset_index()
    )
    wt = (
        t.assign(w=np.where(t["ok"], t["mt"], 0.0))
        .rename(columns={"treated_student": "student"})[["stack", "student", "w"]]
        .assign(treated=1)
    )
    w = pd.concat([wt, wc], ignore_index=True)
    u = units[["stack", "student", "treated"]].astype({"treated": int})
    return u.merge(w, on=["stack", "student", "treated"], how="left")["w"].fillna(0.0).to_numpy()


def fixed_draws(prepared, data, B):
    """V3 (resampled counts) and V5 (exponential weights), matches held fixed."""
    frame = data.candidates.frame
    cluster = pd.Series(
        data.row_cluster, index=pd.MultiIndex.from_arrays([frame["stack"], frame["student"]])
    )
    out3, out5 = [], []
    for d in range(B):
        counts = pr.draw_counts(data.seed, d, data.n_clusters).astype(float)
        rng = np.random.default_rng([data.seed, 99, d])
        expw = rng.exponential(size=data.n_clusters)
        for m, dest in ((counts, out3), (expw, out5)):
            mass = pd.Series(m[cluster.to_numpy()], index=cluster.index)
            try:
                dest.append(
                    fits(prepared, lambda u, pairs, t, mass=mass: fixed_weights(u, pairs, t, mass))
                )
            except (ValueError, np.linalg.LinAlgError):
                dest.append({})
    return out3, out5


def pilot_sample(family, seed, fraction, folder):
    """Truth and matched sample of a replication, with the procedure data the pilot used.

    The pilot ran when the draws resampled schools (``inference.procedure_scheme`` did not
    exist yet): the scheme is pinned to ``resample`` so that ``pr.procedure_data`` gives the
    run's own panel and candidates, as then.
    """
    truth, prepared = fm.simulate_family(family, seed, fraction, Path(folder))
    config = with_setting(prepared.config, "inference", procedure_scheme="resample")
    return truth, dataclasses.replace(prepared, config=config)


def error_rows(family, seed, truth, table, results, draws, variants):
    """One row per group, headline month and variant: estimate, analytic and variant error."""
    rows = []
    for label, res in results.items():
        if label not in truth["event_study"]:
            continue
        g = table.loc[table["group"] == label].set_index("rel_time")
        for v in variants:
            paths = pd.DataFrame(
                [
                    dr.get(v, {}).get(label, pd.Series(dtype=float))
                    if dr.get(v) and label in dr[v]
                    else pd.Series(dtype=float)
                    for dr in draws
                ]
            )
            iv = pr.procedure_intervals(
                res.coefficients, paths, band_rel_times=[], alpha=0.05
            ).set_index("rel_time")
            for r in mc.HEADLINE:
                if r not in g.index:
                    continue
                rows.append(
                    dict(
                        family=family,
                        seed=seed,
                        group=label,
                        rel_time=r,
                        variant=v,
                        truth=truth["event_study"][label][str(r)],
                        estimate=g.loc[r, "estimate"],
                        std_error=g.loc[r, "std_error"],
                        procedure_se=iv.loc[r, "procedure_std_error"],
                    )
                )
    return pd.DataFrame(rows)


def replication(family, seed, fraction, B, out):
    """One replication: simulate, estimate, draw, write each variant's errors."""
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="lr-exp-") as tmp:
        truth, prepared = pilot_sample(family, seed, fraction, tmp)
        table, results = estimate_event_studies(prepared, subgroups=("grade_band",))
        data = pr.procedure_data(prepared)
        draws = [draw(data, d) for d in range(B)]
        v3, v5 = fixed_draws(prepared, data, B)
        for dr, a, b in zip(draws, v3, v5, strict=True):
            dr["V3"], dr["V5"] = a, b
    variants = ("V0", "V1", "V2", "V3", "V5")
    error_rows(family, seed, truth, table, results, draws, variants).to_csv(out, index=False)


if __name__ == "__main__":
    family, first, n, fraction, B, outdir = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        float(sys.argv[4]),
        int(sys.argv[5]),
        Path(sys.argv[6]),
    )
    outdir.mkdir(parents=True, exist_ok=True)
    for seed in range(first, first + n):
        f = outdir / f"{family}-{seed}.csv"
        if not f.exists():
            replication(family, seed, fraction, B, f)
            print("done", seed, flush=True)
