import pytest
from pydantic import ValidationError

from leapresearch.config import Config, ParameterError, load_config, parse_override
from leapresearch.paths import PARAMS


def test_demo_parameters_load_and_are_frozen():
    cfg = load_config("demo")
    assert cfg.analysis.window == (-12, 12)
    assert cfg.analysis.reference == -1
    assert cfg.matching.ratio == 3
    with pytest.raises(ValidationError):
        cfg.matching.ratio = 5  # type: ignore[misc]


def test_every_vintage_file_is_valid():
    files = sorted(p for p in PARAMS.glob("*.yaml") if p.name != "base.yaml")
    assert files, "at least one vintage parameter file"
    for p in files:
        assert isinstance(load_config(p), Config)


def test_overrides_apply_last_and_are_typed():
    cfg = load_config("demo", overrides=["matching.ratio=5", "analysis.cluster=school"])
    assert cfg.matching.ratio == 5
    assert cfg.analysis.cluster == "school"
    assert parse_override("a.b.c=[1, 2]") == {"a": {"b": {"c": [1, 2]}}}


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("matching.ratioo=3", "matching.ratioo"),
        ("analysis.cluster=classroom", "analysis.cluster"),
        ("analysis.window=[-3, -5]", "reference"),
        ("matching.ratio=0", "matching.ratio"),
        ("subgroups=[shoe_size]", "subgroups"),
        ("inference.intervals=percentile", "inference.intervals"),
        ("inference.bootstrap_draws=50", "inference.bootstrap_draws"),
        ("inference.draws=999", "inference.draws"),
        ("robust.est_method=ipw", "robust.est_method"),
        ("robust.trim=0.3", "trim"),
        ("robust.pre_trajectory=[0, 3]", "pre_trajectory"),
        ("robust.demographics=[shoe_size]", "robust.demographics"),
        ("robust.unconditional.anticipation=-1", "robust.unconditional.anticipation"),
    ],
)
def test_bad_parameters_name_the_key(override, fragment):
    with pytest.raises(ParameterError, match=fragment):
        load_config("demo", overrides=[override])


def test_missing_vintage_file_is_a_clear_error():
    with pytest.raises(ParameterError, match="not found"):
        load_config("1999-00")


def test_digest_changes_with_parameters():
    a = load_config("demo")
    b = load_config("demo", overrides=["matching.caliper=0.1"])
    assert a.digest() == load_config("demo").digest()
    assert a.digest() != b.digest()


def test_input_mapping_of_the_example_extract():
    cfg = load_config("example-extract")
    mapping = cfg.input.mapping()
    students = mapping.table("students")
    assert students.file == "PSIS_OCTOBER_ROSTER.csv"
    assert students.rename["SASID"] == "student_id"
    assert students.recode["grade"]["01"] == "1" and students.recode["grade"]["KG"] == "K"
    assert students.recode["ell"] == {"Y": "1", "N": "0"}
    assert mapping.table("leap_visits").date_format == {"visit_date": "%m/%d/%Y"}
    assert mapping.trim and "NULL" in mapping.tokens()
    # the demo vintage maps nothing; its null tokens are the defaults
    assert load_config("demo").input.mapping().table("students").rename == {}


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("input.students.rename={SASID: sasid}", "'sasid' is not a column of students"),
        ("input.students.recode={grade: {yes: K}}", "quote it"),
        ("input.leap_visits.date_format={when: '%Y'}", "'when' is not a column of leap_visits"),
        ("input.students.colour=red", "input.students.colour"),
    ],
)
def test_bad_input_mappings_name_the_key(override, fragment):
    with pytest.raises(ParameterError, match=fragment):
        load_config("demo", overrides=[override])


@pytest.mark.parametrize(
    ("key", "read_as"),
    [
        ("01", "the number 1"),
        ("yes", "the boolean True"),
        ("1.5", "the number 1.5"),
        ("2021-04-01", "the date 2021-04-01"),
        ("~", "null"),
    ],
)
def test_a_key_yaml_does_not_read_as_text_is_refused_with_its_file_and_line(tmp_path, key, read_as):
    """``01: "1"`` is the number 1, not the code "01": refused, naming file, line and key."""
    text = (PARAMS / "example-extract.yaml").read_text(encoding="utf-8")
    assert '"01": "1"' in text
    vintage = tmp_path / "x.yaml"
    vintage.write_text(text.replace('"01": "1"', f'{key}: "1"'), encoding="utf-8")
    line = next(n for n, ln in enumerate(text.splitlines(), 1) if '"01": "1"' in ln)
    with pytest.raises(ParameterError) as info:
        load_config(vintage)
    assert str(info.value) == (
        f"{vintage} line {line}: key {key} of input.students.recode.grade is read as "
        f"{read_as}; quote it ('{key}')"
    )


def test_an_override_key_yaml_does_not_read_as_text_is_refused():
    with pytest.raises(ParameterError) as info:
        load_config("demo", overrides=['input.students.recode={grade: {01: "1"}}'])
    assert str(info.value) == (
        "override 'input.students.recode={grade: {01: \"1\"}}': key 01 of "
        "input.students.recode.grade is read as the number 1; quote it ('01')"
    )


def test_numeric_codes_are_read_as_text():
    cfg = load_config("demo", overrides=['input.students.recode={ell: {"Y": 1, "N": 0}}'])
    assert cfg.input.students.recode == {"ell": {"Y": "1", "N": "0"}}


def test_robust_default_is_doubly_robust_and_keeps_the_unconditional_rows():
    rc = load_config("demo").robust
    assert (rc.est_method, rc.control_group, rc.base_period, rc.anticipation) == (
        "dr",
        "nevertreated",
        "universal",
        0,
    )
    assert rc.unconditional is not None and rc.unconditional.control_group == "notyettreated"
    assert load_config("demo", overrides=["robust.unconditional=null"]).robust.unconditional is None
