"""Typed study settings: defaults, validation, the stored JSON form, the one way in and out of
`Study.settings`, and `create_study` (the domain side of `studies create`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import GuidelineVersion, Study
from review.labeling.settings import DEFAULT_QA_RATE, SettingsError, StudySettings, update_settings
from review.labeling.study import StudyConfig, StudyError, create_study
from review.labeling.views import ITU_IMPAIRMENT, scale_labels

ROOT = Path(__file__).resolve().parent.parent


def _study(settings: dict | None = None, scale: tuple[int, int] = (1, 5)) -> Study:
    """A study that is never stored: the settings functions only read its columns."""
    return Study(name="s", scale_min=scale[0], scale_max=scale[1], settings=settings or {})


def test_an_empty_study_has_the_defaults_and_stores_nothing():
    settings = StudySettings.of(_study())
    assert settings == StudySettings()
    assert (settings.guideline_version_ids, settings.qa_share, settings.qa_rate, settings.show_qa_feedback,
            settings.max_items_per_reviewer, settings.scale_labels) == \
        ((), 0.0, DEFAULT_QA_RATE, False, None, ())
    assert settings.to_json() == {}


def test_every_setting_survives_the_json_round_trip():
    settings = StudySettings(guideline_version_ids=[3, 1], qa_share=1, qa_rate=0.35, show_qa_feedback=True,
                             max_items_per_reviewer=40, scale_labels={5: "same", 1: "different"})
    stored = settings.to_json()
    assert stored == {"guideline_version_ids": [3, 1], "qa_share": 1.0, "qa_rate": 0.35,
                      "show_qa_feedback": True, "max_items_per_reviewer": 40,
                      "scale_labels": {"1": "different", "5": "same"}}  # JSON object keys are text
    assert StudySettings.from_json(stored) == settings
    assert settings.guideline_version_ids == (3, 1)
    assert settings.scale_labels == ((1, "different"), (5, "same"))


@pytest.mark.parametrize(("changes", "message"), [
    ({"qa_share": 1.5}, "qa_share must be a number between 0 and 1"),
    ({"qa_share": -0.1}, "qa_share must be a number between 0 and 1"),
    ({"qa_share": True}, "qa_share must be a number between 0 and 1"),
    ({"qa_rate": "0.5"}, "qa_rate must be a number between 0 and 1"),
    ({"qa_rate": float("nan")}, "qa_rate must be a number between 0 and 1"),
    ({"max_items_per_reviewer": 0}, "max_items_per_reviewer must be a whole number of at least 1"),
    ({"max_items_per_reviewer": 2.5}, "max_items_per_reviewer must be a whole number of at least 1"),
    ({"show_qa_feedback": "yes"}, "show_qa_feedback must be true or false"),
    ({"guideline_version_ids": [1, 1]}, "lists a version twice"),
    ({"guideline_version_ids": [0]}, "must be a list of version ids"),
    ({"guideline_version_ids": "12"}, "must be a list of version ids"),
    ({"scale_labels": {"x": "bad"}}, "keyed by whole scores"),
    ({"scale_labels": {1: ""}}, "non-empty text"),
    ({"scale_labels": [(1, "a", "b")]}, "must map scores to labels"),
])
def test_invalid_settings_are_refused_with_the_setting_named(changes, message):
    with pytest.raises(SettingsError, match=message):
        StudySettings(**changes)
    study = _study({"qa_rate": 0.5})
    with pytest.raises(SettingsError, match=message):
        update_settings(study, **changes)
    assert study.settings == {"qa_rate": 0.5}  # a refused change writes nothing


def test_scale_labels_must_lie_on_the_studys_scale():
    with pytest.raises(SettingsError, match=r"score\(s\) \[7\] outside the study scale 1-5"):
        update_settings(_study(), scale_labels={7: "seven"})
    with pytest.raises(SettingsError, match="outside the study scale 1-5"):
        StudySettings.of(_study({"scale_labels": {"0": "zero"}}))
    wide = _study(scale=(1, 7))
    update_settings(wide, scale_labels={7: "seven", 1: "one"})
    assert scale_labels(wide) == {1: "one", 7: "seven"}
    assert scale_labels(_study()) == ITU_IMPAIRMENT  # no labels of its own: BT.500's


def test_unknown_keys_are_an_error_not_silently_kept():
    with pytest.raises(SettingsError, match="Unknown study setting.*qa-rate"):
        StudySettings.of(_study({"qa-rate": 0.5}))
    # The QA sample lives in its own table since migration 0006; the old key is not a setting.
    with pytest.raises(SettingsError, match="qa_sample"):
        StudySettings.of(_study({"qa_sample": [1, 2]}))
    with pytest.raises(SettingsError, match="Unknown study setting.*qa_samples"):
        StudySettings().replace(qa_samples=[1])


def test_update_writes_a_fresh_dict_that_reaches_the_database(lab):
    """JSON columns do not notice in-place changes: the update must assign a new dict, and a
    setting set back to its default leaves no key behind."""
    with lab.sessions() as s, s.begin():
        study = Study(name="fresh", settings={})
        s.add(study)
        s.flush()
        before = study.settings
        update_settings(study, qa_rate=0.3, show_qa_feedback=True)
        assert study.settings is not before and before == {}
        study_id = study.id
    with lab.sessions() as s, s.begin():
        study = s.get(Study, study_id)
        assert StudySettings.of(study) == StudySettings(qa_rate=0.3, show_qa_feedback=True)
        update_settings(study, qa_rate=DEFAULT_QA_RATE)
    with lab.sessions() as s:
        assert s.get(Study, study_id).settings == {"show_qa_feedback": True}


def test_create_study_checks_then_writes_the_study_and_its_settings(lab):
    with lab.sessions() as s, s.begin():
        s.add(GuidelineVersion(slug="fid", version=2, title="t", body_md="b", content_sha256="0" * 64))
        s.flush()
        study = create_study(s, StudyConfig(name="Faces", raters_per_item=5), "fid:2",
                             max_items_per_reviewer=40)
        assert (study.raters_per_item, study.guideline_version.version) == (5, 2)
        assert StudySettings.of(study).max_items_per_reviewer == 40
        with pytest.raises(StudyError, match="A study named 'Faces' already exists"):
            create_study(s, StudyConfig(name="Faces"), "fid:2")
        with pytest.raises(StudyError, match="No guideline version 'fid:9'"):
            create_study(s, StudyConfig(name="Other"), "fid:9")
        with pytest.raises(SettingsError, match="max_items_per_reviewer"):
            create_study(s, StudyConfig(name="Capped"), "fid:2", max_items_per_reviewer=0)
        with pytest.raises(StudyError, match="gold_rate"):
            create_study(s, StudyConfig(name="Golden", gold_rate=2.0), "fid:2")
        assert StudySettings.of(create_study(s, StudyConfig(name="Open"), "fid:2")) == StudySettings()
        # Refusals leave nothing behind.
        assert set(s.scalars(select(Study.name))) == {"Faces", "Open"}


def _settings_uses(path: Path) -> list[str]:
    """Every `<x>.settings` in a module whose receiver is not the Lab (whose `settings` is the
    process configuration, review.config.Settings), as "line: expression"."""
    nodes = [node for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path)))
             if isinstance(node, ast.Attribute) and node.attr == "settings"
             and not (isinstance(node.value, ast.Name) and node.value.id == "lab")]
    return [f"{node.lineno}: {ast.unparse(node)}" for node in sorted(nodes, key=lambda n: n.lineno)]


def test_only_the_settings_module_touches_study_settings():
    allowed = ROOT / "review" / "labeling" / "settings.py"
    offending = [f"{path.relative_to(ROOT)}:{use}" for path in sorted((ROOT / "review").rglob("*.py"))
                 if path != allowed for use in _settings_uses(path)]
    assert not offending, ("read and write a study's settings through review.labeling.settings "
                           "(StudySettings.of, update_settings):\n" + "\n".join(offending))


def test_the_check_sees_reads_writes_and_class_access(tmp_path):
    sample = tmp_path / "mod.py"
    sample.write_text("a = (study.settings or {}).get('qa_rate')\nstudy.settings = {}\n"
                      "select(Study.settings)\nlab.settings.data_dir\n", encoding="utf-8")
    assert _settings_uses(sample) == ["1: study.settings", "2: study.settings", "3: Study.settings"]
