"""Parameters in one place: ``params/base.yaml`` merged with a vintage file, validated once.

The evaluation reads every design choice from a frozen :class:`Config`. Nothing reads
globals or environment variables. A vintage file (``params/<year>.yaml``) overrides any
key of the base file; ``key=value`` overrides (``matching.ratio=5``) come last.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from leapresearch.data.intake import InputMapping, TableMapping
from leapresearch.paths import PARAMS, PROJECT_ROOT

Subgroup = Literal[
    "grade_band",
    "cohort",
    "district",
    "first_visit_location",
    "visitor_type",
    "visits",
    "home_language",
    "meal_status",
]
Demographic = Literal["gender", "race_ethnicity", "meal_status", "ell", "swd", "home_language"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AnalysisConfig(_Frozen):
    """Event-study specification and inference."""

    window: tuple[int, int] = (-12, 12)
    reference: int = -1
    cluster: Literal["student", "school"] = "student"
    alpha: float = 0.05
    chronic_threshold: float = 0.90
    report_rel_times: tuple[int, ...] = (1, 3, 6, 9)
    regression_adjustment: bool = True
    adjustment_fallback: Literal["pooled", "none"] = "pooled"

    @model_validator(mode="after")
    def _check(self) -> AnalysisConfig:
        lo, hi = self.window
        if not lo < self.reference < hi:
            raise ValueError(f"reference {self.reference} must lie inside window {self.window}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if not 0 < self.chronic_threshold <= 1:
            raise ValueError(f"chronic_threshold must be in (0, 1], got {self.chronic_threshold}")
        return self


class PoolConfig(_Frozen):
    """Who may serve as a comparison student."""

    allow_other_districts: bool = False
    include_attempted_only: bool = True
    not_yet_visited: bool = True
    censoring_weights: bool = False
    max_pre_rate: float | None = None
    min_pre_months: int = 1


class MatchingConfig(_Frozen):
    """Propensity-score nearest-neighbour matching within exact strata."""

    pre_months: int = 12
    demographics: tuple[Demographic, ...] = get_args(Demographic)
    exact: tuple[Literal["district", "grade_band"], ...] = ("district", "grade_band")
    ratio: int = 3
    caliper: float | None = 0.2
    outside_caliper: Literal["nearest", "drop"] = "nearest"
    replace: bool = True
    seed: int = 20210401

    @field_validator("ratio", "pre_months")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"must be at least 1, got {v}")
        return v


class LongTermConfig(_Frozen):
    """Effects on annual outcomes of later school years."""

    outcomes: tuple[Literal["attendance_rate", "chronically_absent"], ...] = (
        "attendance_rate",
        "chronically_absent",
    )
    regression_adjustment: bool = False
    censoring_weights: bool = False
    require_reference_year: bool = False


class PlaceboConfig(_Frozen):
    """A fake event month some school months before the real one.

    The placebo uses fake post months ``0 .. min(window[1], shift_months - pre_months - 1)``
    only, so that they lie before the real matching window
    (:func:`leapresearch.analysis.robustness.placebo_post_end`).
    """

    shift_months: int = 18
    window: tuple[int, int] = (-12, 5)

    @model_validator(mode="after")
    def _check(self) -> PlaceboConfig:
        lo, hi = self.window
        if not lo < -1 < 0 <= hi:
            raise ValueError(f"placebo.window must satisfy lo < -1 and hi >= 0, got {lo, hi}")
        if self.shift_months < 1:
            raise ValueError(f"placebo.shift_months must be positive, got {self.shift_months}")
        return self


RobustDemographic = Literal[
    "district", "grade_band", "gender", "race_ethnicity", "meal_status", "ell", "swd",
    "home_language",
]  # fmt: skip


class UnconditionalRobustConfig(_Frozen):
    """Unconditional Callaway-Sant'Anna rows published beside the default (no covariates)."""

    control_group: Literal["notyettreated", "nevertreated"] = "notyettreated"
    include_never_treated: bool = False
    base_period: Literal["varying", "universal"] = "varying"
    anticipation: int = 3

    @field_validator("anticipation")
    @classmethod
    def _non_negative(cls, v: int) -> int:
        if v < 0:
            raise ValueError(f"must be non-negative, got {v}")
        return v


class RobustConfig(_Frozen):
    """Heterogeneity-robust estimator (Callaway and Sant'Anna; doubly robust by default)."""

    est_method: Literal["dr", "unconditional"] = "dr"
    control_group: Literal["notyettreated", "nevertreated"] = "nevertreated"
    include_never_treated: bool = False
    base_period: Literal["varying", "universal"] = "universal"
    anticipation: int = 0
    pre_trajectory: tuple[int, ...] = (1, 3, 12)
    demographics: tuple[RobustDemographic, ...] = ("grade_band",)
    trim: float = 0.995
    unconditional: UnconditionalRobustConfig | None = UnconditionalRobustConfig()

    @model_validator(mode="after")
    def _check(self) -> RobustConfig:
        if self.anticipation < 0:
            raise ValueError(f"anticipation must be non-negative, got {self.anticipation}")
        if any(k < 1 for k in self.pre_trajectory):
            raise ValueError(f"pre_trajectory lengths must be positive, got {self.pre_trajectory}")
        if not 0.5 < self.trim <= 1:
            raise ValueError(f"trim must lie in (0.5, 1], got {self.trim}")
        return self


Specification = Literal[
    "no_adjustment",
    "outside_caliper_drop",
    "outside_caliper_only",
    "not_yet_visited_pool",
    "never_visited_pool",
    "censoring_weights",
    "no_censoring_weights",
    "attempted_only_excluded",
    "ratio_1",
    "ratio_5",
    "caliper_0.1",
    "caliper_none",
    "trimmed_end_points",
    "cluster_school",
    "cluster_student",
    "intent_to_treat",
]


class IdentificationConfig(_Frozen):
    """Checks of the identifying assumption: bounds, falsification, specifications."""

    groups: tuple[str, ...] = ("all", "grade_band:PK-5", "grade_band:6-12")
    sensitivity_mbar: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0)
    sensitivity_m: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0)
    far_pre_months: tuple[int, int] = (-24, -13)
    falsification_max_students: int = 1000
    specifications: tuple[Specification, ...] = get_args(Specification)

    @model_validator(mode="after")
    def _check(self) -> IdentificationConfig:
        if any(b < 0 for b in (*self.sensitivity_mbar, *self.sensitivity_m)):
            raise ValueError("sensitivity bounds must be non-negative")
        lo, hi = self.far_pre_months
        if not lo <= hi < -1:
            raise ValueError(f"far_pre_months must satisfy lo <= hi < -1, got {lo, hi}")
        if self.falsification_max_students < 2:
            raise ValueError("falsification_max_students must be at least 2")
        return self


class PrivacyConfig(_Frozen):
    """Small-cell suppression thresholds (the convention of the state's public data)."""

    min_count: int = 6
    min_group: int = 20
    min_treated: int = 20


MIN_PROCEDURE_DRAWS = 10
"""Fewest draws of the whole-procedure bootstrap when it is on (199 or more to publish)."""


class InferenceConfig(_Frozen):
    """Which pointwise intervals are published, and the bootstrap's draws and seed.

    The multiplier (Otsu-Rai weighted) bootstrap perturbs each student's influence on the
    event-study path (:mod:`leapresearch.estimation.bootstrap`); its standard errors and
    the simultaneous (sup-t) band over the post-visit months are published beside the
    analytic ones in ``event_study.csv``.
    """

    intervals: Literal["analytic", "bootstrap"] = "analytic"
    bootstrap_draws: int = 999
    seed: int = 20240601
    band: bool = True
    few_clusters: int = 30
    """A joint test (pre-trends of a group, subgroup differences) whose groups have fewer
    clusters than this takes its p-value from the restricted wild cluster bootstrap with
    Webb weights (:mod:`leapresearch.estimation.wild_bootstrap`), not from F(q, G-1)."""
    wild_draws: int = 9999
    """Draws of that wild cluster bootstrap (seeded by ``seed`` and each test's content)."""
    procedure_draws: int = 199
    """Draws of the whole-procedure cluster bootstrap (:mod:`leapresearch.analysis.procedure`:
    score, matching, censoring weights, adjustment and fit re-run per draw); 0 switches it
    off. Its columns ``procedure_*`` of ``event_study.csv`` cover the headline groups."""
    procedure_scheme: Literal["resample", "bayesian"] = "bayesian"
    """How a draw of that bootstrap varies the clusters: ``bayesian`` keeps every cluster
    and gives it an exponential(1) weight (Rubin's Bayesian bootstrap), which enters the
    propensity fit, the matched units' weights and the fits; ``resample`` draws ``G``
    clusters with replacement (a cluster drawn twice enters as two), whose errors the
    validation found 1.3 times the Monte Carlo spread (``validation/README.md``)."""

    def wild_settings(self):
        """The :class:`~leapresearch.estimation.wild_bootstrap.WildSettings` of these fields."""
        from leapresearch.estimation.wild_bootstrap import WildSettings

        return WildSettings(few_clusters=self.few_clusters, draws=self.wild_draws, seed=self.seed)

    @field_validator("bootstrap_draws", "wild_draws")
    @classmethod
    def _enough_draws(cls, v: int, info) -> int:
        if v < 100:
            raise ValueError(f"{info.field_name} must be at least 100, got {v}")
        return v

    @field_validator("few_clusters")
    @classmethod
    def _few_clusters(cls, v: int) -> int:
        if v < 0:
            raise ValueError(f"few_clusters must be at least 0 (0: never bootstrap), got {v}")
        return v

    @field_validator("procedure_draws")
    @classmethod
    def _procedure_draws(cls, v: int) -> int:
        if v != 0 and v < MIN_PROCEDURE_DRAWS:
            raise ValueError(
                f"procedure_draws must be 0 (off) or at least {MIN_PROCEDURE_DRAWS}, got {v}"
            )
        return v


def _as_code(value: Any, where: str) -> str:
    """A YAML scalar as the text it stands for; booleans and nulls are refused."""
    if isinstance(value, bool) or value is None:
        raise ValueError(
            f'{where}: {value!r} is not a code; quote it in the YAML file (e.g. "Y", "NO")'
        )
    if isinstance(value, int | float | str):
        return str(value)
    raise ValueError(f"{where}: expected text or a number, got {value!r}")


_CONTRACT_COLUMNS = {
    "students": (
        "student_id school_year district school_id grade gender race_ethnicity meal_status "
        "ell swd home_language"
    ).split(),
    "attendance_monthly": (
        "student_id district school_id month inperson_membership inperson_attended "
        "remote_membership remote_attended"
    ).split(),
    "leap_visits": (
        "visit_id student_id district visit_date visit_status visit_location visitor_type"
    ).split(),
}


class TableInput(_Frozen):
    """How one table of the state's extract maps onto the contract (``input.<table>``).

    Codes are compared as text: quote them in YAML (``"01": "1"``; an unquoted ``01`` is
    read by YAML as the number 1).
    """

    file: str | None = None
    rename: dict[str, str] = {}
    recode: dict[str, dict[str, str]] = {}
    date_format: dict[str, str] = {}

    @field_validator("recode", mode="before")
    @classmethod
    def _codes_as_text(cls, v: Any) -> Any:
        if not isinstance(v, Mapping):
            return v
        out: dict[str, dict[str, str]] = {}
        for col, codes in v.items():
            if not isinstance(codes, Mapping):
                raise ValueError(f"recode.{col} must map extract values to contract values")
            out[str(col)] = {
                _as_code(k, f"recode.{col}"): _as_code(x, f"recode.{col}.{k}")
                for k, x in codes.items()
            }
        return out


class InputConfig(_Frozen):
    """The input mapping of a vintage: the state's extract layout -> the contract.

    Applied by ``validate`` and ``run`` alike before any contract rule (see
    :mod:`leapresearch.data.intake`).
    """

    trim: bool = False
    null_tokens: tuple[str, ...] = ()
    students: TableInput = TableInput()
    attendance_monthly: TableInput = TableInput()
    leap_visits: TableInput = TableInput()

    @model_validator(mode="after")
    def _known_columns(self) -> InputConfig:
        for name, columns in _CONTRACT_COLUMNS.items():
            t: TableInput = getattr(self, name)
            used = {
                **{f"rename.{k}": v for k, v in t.rename.items()},
                **{f"recode.{k}": k for k in t.recode},
                **{f"date_format.{k}": k for k in t.date_format},
            }
            for where, col in used.items():
                if col not in columns:
                    raise ValueError(
                        f"{name}.{where}: {col!r} is not a column of {name} in the data "
                        f"contract ({', '.join(columns)})"
                    )
        return self

    def mapping(self) -> InputMapping:
        """The mapping as the data layer uses it."""
        tables = {
            name: TableMapping(
                file=t.file, rename=t.rename, recode=t.recode, date_format=t.date_format
            )
            for name in _CONTRACT_COLUMNS
            for t in [getattr(self, name)]
        }
        return InputMapping(tables=tables, trim=self.trim, null_tokens=self.null_tokens)


class PublishedFigure(_Frozen):
    """A published estimate shown beside this run's in the report's crosswalk."""

    group: str
    rel_time: int
    estimate: float
    approximate: bool = False
    difference: str = ""


class ReportConfig(_Frozen):
    """What the report's front page says about itself (title, program, authors, date).

    <<<<<<< HEAD
        ``paper``: the paper size of ``report.pdf`` (``letter`` or ``a4``).

        Nothing here moves a number; the session cache ignores this section.
    =======
        Nothing here moves a number; the session cache ignores this section. ``reviewed:
        false`` (written by ``leapresearch new-year``) marks the per-year fields as not yet
        reviewed: ``validate`` and ``run`` warn and the front page says it is a draft.
    >>>>>>> yearly
    """

    title: str = "Did home visits raise attendance?"
    program: str = "Learner Engagement and Attendance Program (LEAP)"
    authors: tuple[str, ...] = ()
    organisation: str | None = None
    date: dt.date | None = None
    school_years: str | None = None
    reviewed: bool = True
    program_description: str = ""
    published_source: str = ""
    published: tuple[PublishedFigure, ...] = ()
    paper: Literal["letter", "a4"] = "letter"


class Config(_Frozen):
    """All parameters of one evaluation run (base file merged with a vintage file)."""

    vintage: str = "demo"
    data_dir: str = "data_raw/demo"
    program_start: dt.date | None = None
    input: InputConfig = InputConfig()
    school_years: tuple[str, ...] | None = None
    cohorts: tuple[str, ...] | None = None
    analysis: AnalysisConfig = AnalysisConfig()
    comparison_pool: PoolConfig = PoolConfig()
    matching: MatchingConfig = MatchingConfig()
    subgroups: tuple[Subgroup, ...] = get_args(Subgroup)
    long_term: LongTermConfig = LongTermConfig()
    placebo: PlaceboConfig = PlaceboConfig()
    robust: RobustConfig = RobustConfig()
    identification: IdentificationConfig = IdentificationConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    inference: InferenceConfig = InferenceConfig()
    report: ReportConfig = ReportConfig()

    @property
    def data_path(self) -> Path:
        """The data folder, resolved against the project root when relative."""
        p = Path(self.data_dir)
        return p if p.is_absolute() else PROJECT_ROOT / p

    def as_dict(self) -> dict[str, Any]:
        """The resolved parameters as plain JSON-compatible data."""
        return json.loads(self.model_dump_json())

    def digest(self, *, exclude: tuple[str, ...] = ()) -> str:
        """sha256 of the resolved parameters (canonical JSON), optionally without some keys."""
        data = {k: v for k, v in self.as_dict().items() if k not in exclude}
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


class ParameterError(ValueError):
    """A parameter file or override is wrong; the message names the file and key."""


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_READ_AS = {
    "tag:yaml.org,2002:int": "the number",
    "tag:yaml.org,2002:float": "the number",
    "tag:yaml.org,2002:bool": "the boolean",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:timestamp": "the date",
}


class _KeyCheckingLoader(yaml.SafeLoader):
    """A safe loader that refuses mapping keys YAML does not read as text.

    An unquoted ``01`` is the number 1, ``yes`` a boolean and ``2021-04-01`` a date;
    every key of a parameter file is a name or a code, so each must be text. The first
    such key raises :class:`ParameterError` naming the file, its line, the key as
    written, where it sits and what YAML made of it.
    """

    source = "parameters"
    """The file (or override) the text came from, for the message."""
    key_prefix: tuple[str, ...] = ()
    """Where the document sits in the parameters (an override's dotted key)."""

    def check_keys(
        self, node: yaml.Node, path: tuple[str, ...] = (), seen: set[int] | None = None
    ) -> None:
        """Walk the composed document; raise on the first key that is not text."""
        seen = set() if seen is None else seen
        if id(node) in seen:  # an alias of a node already walked (or a recursive one)
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.check_keys(item, (*path, str(i)), seen)
        if not isinstance(node, yaml.MappingNode):
            return
        for key, value in node.value:
            if key.tag == _MERGE_TAG:
                self.check_keys(value, path, seen)
                continue
            if isinstance(key, yaml.ScalarNode) and key.tag == _STR_TAG:
                self.check_keys(value, (*path, key.value), seen)
                continue
            raise ParameterError(self._refusal(key, path))

    def _refusal(self, key: yaml.Node, path: tuple[str, ...]) -> str:
        line = self.source
        if not self.key_prefix:  # a file: the key's line (an override is one line)
            line += f" line {key.start_mark.line + 1}"
        path = (*self.key_prefix, *path)
        of = f" of {'.'.join(path)}" if path else ""
        if not isinstance(key, yaml.ScalarNode):
            return f"{line}: a key{of} is a list or mapping; keys must be text"
        value = self.construct_object(key, deep=True)
        what = _READ_AS.get(key.tag, "a value that is not text")
        shown = "" if key.tag.endswith(":null") else f" {value}"
        return (
            f"{line}: key {key.value or '(empty)'}{of} is read as {what}{shown}; quote it "
            f"('{key.value}')"
        )


def _safe_load(text: str, where: str, prefix: tuple[str, ...] = ()) -> Any:
    """``yaml.safe_load`` that refuses keys YAML does not read as text (see the loader).

    ``where`` names the source in the message (the file, with the key's line, or the
    override); ``prefix`` is the dotted key an override's value sits under.
    """
    loader = _KeyCheckingLoader(text)
    loader.source, loader.key_prefix = where, prefix
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        loader.check_keys(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = _safe_load(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        raise ParameterError(f"parameter file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: must be a mapping of keys to values")
    return data


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``"matching.ratio=5"`` (or ``"matching.ratio: 5"``) into a nested mapping.

    The value is parsed as YAML.
    """
    if "=" in text:
        key, raw = text.split("=", 1)
    elif ":" in text:
        key, raw = text.split(":", 1)
    else:
        raise ParameterError(f"override must be key=value, got {text!r}")
    try:
        value = _safe_load(raw, f"override {text!r}", tuple(key.strip().split(".")))
    except yaml.YAMLError as exc:
        raise ParameterError(f"override {text!r}: the value is not valid YAML: {exc}") from None
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def resolve_params_file(name_or_path: str | Path) -> Path:
    """A vintage name (``demo``, ``2021-22``) or a path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        return p if p.is_absolute() else (Path.cwd() / p)
    return PARAMS / f"{name_or_path}.yaml"


def load_config(
    vintage: str | Path | None = "demo",
    *,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    data_dir: str | Path | None = None,
    base: Path | None = None,
) -> Config:
    """Load ``params/base.yaml``, merge a vintage file and overrides, and validate.

    Parameters
    ----------
    vintage : str or Path or None
        A vintage name (``"demo"`` reads ``params/demo.yaml``) or a YAML path; None
        uses the base file alone.
    overrides : sequence of str or mapping
        ``key=value`` strings (dotted keys) or a nested mapping, applied last.
    data_dir : str or Path, optional
        Override of the vintage's data folder (kept verbatim, not parsed as YAML).
    base : Path, optional
        The base file; defaults to ``params/base.yaml``.

    Returns
    -------
    Config
        The frozen, validated parameters.

    Raises
    ------
    ParameterError
        A file is missing or malformed, a key is unknown or a value is invalid.
    """
    base_path = base or PARAMS / "base.yaml"
    merged = _read_yaml(base_path)
    sources = [str(base_path)]
    if vintage is not None:
        vpath = resolve_params_file(vintage)
        merged = _deep_merge(merged, _read_yaml(vpath))
        sources.append(str(vpath))
    if isinstance(overrides, Mapping):
        merged = _deep_merge(merged, overrides)
    else:
        for text in overrides:
            merged = _deep_merge(merged, parse_override(text))
    if data_dir is not None:
        merged["data_dir"] = str(data_dir)
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"])
            lines.append(f"  {loc}: {err['msg']} (got {err.get('input')!r})")
        raise ParameterError(
            "invalid parameters from " + " + ".join(sources) + ":\n" + "\n".join(lines)
        ) from None


# --------------------------------------------------------------------------------------
# A new vintage file (``leapresearch new-year``)
# --------------------------------------------------------------------------------------

_CONTRACT_FILES = tuple(f"{t}.{ext}" for t in _CONTRACT_COLUMNS for ext in ("csv", "parquet"))


_AMBIGUOUS = re.compile(r"[0-9+\-.~]|(?i:y|n|yes|no|on|off|true|false|null)$|$")
"""Text YAML (1.1 or 1.2) could read as something else: quoted when written."""


class _QuotingDumper(yaml.SafeDumper):
    """Writes text that starts with a digit or looks like a boolean or null in quotes."""


_QuotingDumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style='"' if _AMBIGUOUS.match(text) else None
    ),
)


def _q(value: Any) -> str:
    """A scalar or list as YAML text (JSON is YAML; strings always quoted)."""
    return json.dumps(value, ensure_ascii=False)


def _school_years_in(data_dir: Path, source: Mapping[str, Any]) -> tuple[str | None, str]:
    """The school years of the data (``"2022-23 to 2024-25"``) and how they were found.

    The folder is read through the input mapping of ``source`` exactly as ``validate``
    reads it; when it cannot be read, the label is None and the reason is returned.
    """
    from leapresearch.data.contract import validate_folder

    config = Config.model_validate({k: v for k, v in source.items() if k in ("input",)})
    tables, violations, _ = validate_folder(data_dir, mapping=config.input.mapping())
    if tables is None:
        first = str(violations[0]) if violations else "unreadable"
        return None, f"could not be read from the data ({len(violations)} problem(s); {first})"
    years = sorted(tables.students["school_year"].astype(str).unique())
    label = years[0] if len(years) == 1 else f"{years[0]} to {years[-1]}"
    return label, "read from the roster: " + ", ".join(years)


def _manifest_for(data_dir: Path) -> tuple[dict[str, str], str]:
    """The folder's checksum manifest: checked when present, else written (file -> sha256)."""
    from leapresearch.data.intake import MANIFEST_NAME, manifest_problems, write_manifest

    expected, problems = manifest_problems(data_dir)
    if problems:
        listed = "; ".join(f"{f}: {rule}" for f, rule in problems)
        raise ParameterError(f"{data_dir / MANIFEST_NAME} does not match the folder: {listed}")
    if expected is not None:
        return expected, f"checked: {MANIFEST_NAME} was there and every file matches it"
    try:
        return write_manifest(data_dir), f"written: {MANIFEST_NAME} did not exist"
    except OSError as exc:
        raise ParameterError(
            f"cannot write {data_dir / MANIFEST_NAME} ({exc}); write it with "
            "`sha256sum * > checksums.sha256` in the folder and try again"
        ) from None


def _vintage_text(
    vintage: str, data_dir: Path, source: Mapping[str, Any], fields: Mapping[str, Any]
) -> str:
    """The YAML text of a new vintage file, every per-year line marked REVIEW."""
    from leapresearch.data.intake import MANIFEST_NAME

    like, years, manifest = fields["like"], fields["school_years"], fields["manifest"]
    from_like = f" (from params/{like}.yaml)" if like else ""
    lines = [
        f"# Vintage {vintage}, written by `leapresearch new-year` on {fields['today']}.",
        "# Review every line marked REVIEW, then set report.reviewed to true: until then",
        "# `validate` and `run` warn, and the report's front page says it is a draft.",
        f"vintage: {_q(vintage)}",
        f"data_dir: {_q(fields['data_dir'])}",
        f"program_start: {source.get('program_start') or 'null'}  # REVIEW: earliest possible "
        f"visit{from_like}",
        "school_years: null          # null: every school year in the data",
        "cohorts: null               # null: report every cohort found",
        "report:",
        f"  title: {_q(fields['title'])}  # REVIEW",
        f"  authors: {_q(list(fields['authors']))}  # REVIEW: names as printed on the front page",
        f"  organisation: {_q(fields['organisation'])}  # REVIEW",
        f"  date: {fields['date']}  # REVIEW: date of the report",
        f"  school_years: {_q(years[0])}  # REVIEW: {years[1]}",
        "  reviewed: false  # true once every REVIEW line is checked",
        f"# REVIEW the checksum manifest {fields['data_dir']}/{MANIFEST_NAME} ({manifest[1]})",
        "# against the files delivered:",
        *[f"#   {digest}  {name}" for name, digest in manifest[0].items()],
    ]
    mapping = source.get("input")
    if mapping:
        dumped = yaml.dump(
            {"input": mapping}, Dumper=_QuotingDumper, sort_keys=False,
            default_flow_style=None, width=96, allow_unicode=True,
        )  # fmt: skip
        lines += [
            f"# REVIEW the input mapping{from_like} against this year's files:",
            "# `leapresearch validate --params " + vintage + "` applies it as `run` will.",
            dumped.rstrip("\n"),
        ]
    else:
        lines.append("# The extracts follow the raw-data contract's layout (no input mapping).")
    return "\n".join(lines) + "\n"


def new_vintage(
    vintage: str,
    data_dir: str | Path,
    *,
    like: str | None = None,
    authors: Sequence[str] = (),
    organisation: str | None = None,
    title: str | None = None,
    date: dt.date | None = None,
    params_dir: Path | None = None,
) -> tuple[Path, list[str]]:
    """Write ``params/<vintage>.yaml`` for a new year's data folder; never replace one.

    Every per-year field is written for review: the report's title (built from the
    vintage), date (today), school years (read from the data through the input mapping),
    authors and organisation (as given, else empty), the input mapping and program start
    (copied from the vintage ``like``, else none) and the data folder's checksum manifest
    (``checksums.sha256``: checked when present, else written). ``report.reviewed: false``
    makes ``validate`` and ``run`` warn until the analyst has reviewed them. Nothing is
    carried over from the ``report`` section of another vintage.

    Parameters
    ----------
    vintage : str
        The new vintage's name (``2024-25``): letters, digits, ``.``, ``_`` and ``-``.
    data_dir : str or Path
        The year's data folder.
    like : str, optional
        An earlier vintage (name or YAML path) whose ``input`` mapping and
        ``program_start`` the new one starts from.
    authors, organisation, title, date
        Front-page fields (defaults: none, none, the base title with the vintage, today).
    params_dir : Path, optional
        Where the file is written (default ``params/``).

    Returns
    -------
    path : Path
        The file written.
    review : list of str
        What to review, one line per field.

    Raises
    ------
    ParameterError
        The file exists, the name or folder is wrong, the manifest does not match, or
        the folder has no contract files and no mapping was named with ``like``.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", vintage) or vintage == "base":
        raise ParameterError(f"vintage {vintage!r}: use letters, digits, '.', '_', '-' (2024-25)")
    path = Path(params_dir or PARAMS) / f"{vintage}.yaml"
    if path.exists():
        raise ParameterError(f"{path} exists; a vintage file is never replaced (edit it instead)")
    folder = Path(data_dir).resolve()
    if not folder.is_dir():
        raise ParameterError(f"data folder {data_dir} does not exist")
    source = _read_yaml(resolve_params_file(like)) if like else {}
    if not source.get("input") and not any((folder / f).is_file() for f in _CONTRACT_FILES):
        raise ParameterError(
            f"{data_dir} has no students.csv or students.parquet: if the extracts keep the "
            "state's layout, name the vintage whose input mapping fits with --like "
            "(e.g. --like example-extract)"
        )
    base_title = (_read_yaml(PARAMS / "base.yaml").get("report") or {}).get("title", "")
    today = dt.date.today()
    fields = {
        "like": like,
        "today": today.isoformat(),
        "data_dir": _project_relative(folder),
        "title": title or f"{base_title} Evaluation of the {vintage} data".strip(),
        "authors": tuple(authors),
        "organisation": organisation,
        "date": (date or today).isoformat(),
        "manifest": _manifest_for(folder),
        "school_years": _school_years_in(folder, source),
    }
    text = _vintage_text(vintage, folder, source, fields)
    _check_and_create(path, text)
    review = [
        f"report.title: {fields['title']}",
        f"report.date: {fields['date']}",
        f"report.school_years: {fields['school_years'][0]} ({fields['school_years'][1]})",
        f"report.authors: {', '.join(authors) or 'none (add the names)'}",
        f"report.organisation: {organisation or 'none'}",
        f"input mapping: {'copied from ' + str(like) if source.get('input') else 'none'}",
        f"checksums.sha256: {len(fields['manifest'][0])} file(s), {fields['manifest'][1]}",
    ]
    return path, review


def _project_relative(folder: Path) -> str:
    try:
        return folder.relative_to(PROJECT_ROOT.resolve()).as_posix()
    except ValueError:
        return folder.as_posix()


def _check_and_create(path: Path, text: str) -> None:
    """Load ``text`` as a vintage file (base merged, validated), then create ``path`` with it."""
    data = _safe_load(text, str(path))
    try:
        Config.model_validate(_deep_merge(_read_yaml(PARAMS / "base.yaml"), data))
    except ValidationError as exc:  # pragma: no cover - the text is generated
        raise ParameterError(f"{path}: the generated file is invalid: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x", encoding="utf-8") as fh:
            fh.write(text)
    except FileExistsError:
        raise ParameterError(f"{path} exists; a vintage file is never replaced") from None
