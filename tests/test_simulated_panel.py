"""The simulated panel (review.labeling.simulated_panel): the ground truth it promises, the P.910
rater model with guideline and QA effects, ratings in a study marked simulated and removable,
and the `simulate` / `answer` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from db.models import (
    Assignment,
    DegradedImage,
    GuidelineVersion,
    Rating,
    Restoration,
    SourceImage,
    Study,
    StudyReviewer,
    User,
)
from review.analysis.agreement import krippendorff_alpha
from review.analysis.export import ratings_frame
from review.answer.sentences import study_answer
from review.cli import cli
from review.labeling.settings import update_settings
from review.labeling.simulated_panel import (
    PanelSpec,
    SimulationError,
    TrueCurve,
    draw_raters,
    item_quality,
    rate,
    remove_simulated,
    sample_faithful,
    simulate_study,
    truth_for,
)
from review.labeling.study import StudyConfig, add_item, ensure_study
from tests.support import build_study, rate_next


def test_true_curve_crosses_the_threshold_at_its_boundary():
    t = TrueCurve(12.0, width=2.5)
    assert t.share(12.0) == pytest.approx(0.8)
    levels = np.linspace(0, 40, 81)
    assert np.all(np.diff(t.share(levels)) < 0)
    assert t.share(0.0) < t.top and t.share(40.0) > t.floor
    sd = TrueCurve(20.0, strength_slope=25.0, reference_strength=0.2)
    assert sd.boundary_at(0.6) == pytest.approx(10.0)
    assert sd.share(10.0, 0.6) == pytest.approx(0.8)
    assert TrueCurve(float("inf")).share(100.0) == pytest.approx(0.97)
    assert truth_for("wiener", "defocus").boundary == pytest.approx(12.0 * 0.35)


def test_the_panel_rates_faithful_with_the_true_share():
    """Many fresh raters on fresh items: the faithful share is the ground truth's."""
    spec = PanelSpec(inconsistency_spread=0.0)
    truth = TrueCurve(12.0)
    rng = np.random.default_rng(0)
    for level in (6.0, 12.0, 16.0):
        k = sample_faithful(truth, spec, level, 20_000, rng)
        assert k / 20_000 == pytest.approx(float(truth.share(level)), abs=0.015)


def _alpha(scores: np.ndarray) -> float:
    import pandas as pd

    df = pd.DataFrame([{"item": i, "rater": j, "score": int(s)} for i, row in enumerate(scores)
                       for j, s in enumerate(row)])
    return krippendorff_alpha(df, "interval")


def test_a_clearer_guideline_and_qa_raise_agreement():
    spec = PanelSpec()
    rng = np.random.default_rng(1)
    psi = item_quality(TrueCurve(12.0), spec, np.linspace(2, 24, 200), rng)
    reference = rate(psi, draw_raters(spec, 8, np.random.default_rng(2)), spec, np.random.default_rng(3))
    clear = rate(psi, draw_raters(spec, 8, np.random.default_rng(2), clarity=0.6), spec,
                 np.random.default_rng(3))
    qa = rate(psi, draw_raters(spec, 8, np.random.default_rng(2), qa=True), spec, np.random.default_rng(3))
    truth = np.clip(np.rint(psi), 1, 5)[:, None]
    assert _alpha(clear) > _alpha(reference) + 0.03
    assert (qa == truth).mean() > (reference == truth).mean() + 0.1
    assert reference.min() >= 1 and reference.max() <= 5


def _study(session, levels=(2.0, 5.0, 8.0, 11.0, 14.0, 17.0, 20.0), raters_per_item=10):
    gvs = [GuidelineVersion(slug="g", version=v, title="t", body_md="b", content_sha256=f"{v}" * 64)
           for v in (1, 2)]
    session.add_all(gvs)
    session.flush()
    study = ensure_study(session, StudyConfig(name="Shake", raters_per_item=raters_per_item, gold_rate=0.0),
                         gvs[0])
    update_settings(study, guideline_version_ids=[g.id for g in gvs], qa_share=0.5)
    for n, level in enumerate(levels):
        src = SourceImage(sha256=f"{n:0>64}", path="a/a.png", width=8, height=8)
        session.add(src)
        session.flush()
        deg = DegradedImage(source_id=src.id, recipe_key=f"k{n}", kind="motion_line", level=level,
                            sha256="b" * 64, path="b/b.png")
        session.add(deg)
        session.flush()
        for method in ("wiener", "blurred"):
            res = Restoration(degraded_id=deg.id, method=method, params_key=f"{method}{n}", sha256="c" * 64,
                              path="c/c.png")
            session.add(res)
            session.flush()
            add_item(session, study, res)
    return study


def test_simulated_ratings_are_marked_kept_apart_and_removable(engine):
    sessions = sessionmaker(engine, expire_on_commit=False)
    with sessions() as s, s.begin():
        study = _study(s, raters_per_item=9)
        real = User(username="alice", role="reviewer", password_hash="x")
        s.add(real)
        s.flush()
        summary = simulate_study(s, study, raters=8, seed=4)
        assert summary.ratings == 8 * 14 and summary.raters == 8
        # Two guideline arms x QA on/off, two raters each.
        assert sorted(summary.cohorts.values()) == [2, 2, 2, 2]
        sims = s.scalars(select(User).where(User.simulated.is_(True))).all()
        assert len(sims) == 8 and not any(u.active for u in sims)
        assert all(u.password_hash == "!" for u in sims)
        members = s.scalars(select(StudyReviewer).where(StudyReviewer.study_id == study.id)).all()
        assert {m.qa_enabled for m in members} == {True, False}
        # Each simulated rating holds one of its item's slots, as a real one does.
        done = select(Assignment.item_id, Assignment.slot).where(Assignment.status == "done")
        slots = s.execute(done).all()
        assert len(slots) == 112 and len(set(slots)) == 112 and max(sl for _i, sl in slots) == 7
        df = ratings_frame(s, study)
        assert len(df) == 112 and df["simulated"].all()
        answer = study_answer(df, study.name)
        wiener = next(c for c in answer.curves if c.restorer == "wiener")
        assert wiener.simulated_ratings == 56
        assert study_answer(df, study.name, include_simulated=False).curves == []
        with pytest.raises(SimulationError, match="already holds a simulated panel"):
            simulate_study(s, study, raters=1)
        study_id, real_id = study.id, real.id
    # A real reviewer still gets the one free slot of every item, and nothing more.
    rated = [rate_next(sessions, study_id, real_id, score=5) for _ in range(15)]
    assert len([r for r in rated if r is not None]) == 14 and rated[-1] is None
    with sessions() as s, s.begin():
        study = s.get(Study, study_id)
        df = ratings_frame(s, study)
        assert len(df) == 126 and (~df["simulated"]).sum() == 14
        assert remove_simulated(s, study) == 112
        assert s.scalar(select(func.count()).select_from(Rating)) == 14  # the real ratings stay
        assert s.scalar(select(func.count()).select_from(User).where(User.simulated.is_(True))) == 0
        assert s.scalar(select(func.count()).select_from(Assignment)) == 14
        with pytest.raises(SimulationError, match="no simulated ratings"):
            remove_simulated(s, study)
        with pytest.raises(SimulationError, match="room for only 8 more; use --raters 8"):
            simulate_study(s, study, raters=9)


def test_simulate_and_answer_commands(tmp_path, monkeypatch):
    monkeypatch.setenv("REVIEW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("REVIEW_DATABASE_URL", raising=False)
    runner = CliRunner()
    assert runner.invoke(cli, ["init"]).exit_code == 0
    from review.database import open_lab

    build_study(open_lab(), 4, name="Portraits", raters_per_item=6)
    missing = runner.invoke(cli, ["simulate", "--study", "Nope"])
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    too_many = runner.invoke(cli, ["simulate", "--study", "Portraits", "--raters", "7"])
    assert too_many.exit_code == 1 and "--raters 6" in too_many.output
    ok = runner.invoke(cli, ["simulate", "--study", "Portraits", "--raters", "5", "--seed", "2"])
    assert ok.exit_code == 0 and "20 simulated ratings by 5 simulated raters" in ok.output, ok.output
    # Every item sits at one blur level: no curve, and the answer says so.
    md = runner.invoke(cli, ["answer", "--study", "Portraits"])
    assert md.exit_code == 0 and "No answer yet" in md.output
    out = runner.invoke(cli, ["answer", "--study", "Portraits", "--format", "json", "--no-simulated"])
    data = json.loads(out.output)
    assert data["curves"] == [] and data["options"]["include_simulated"] is False
    bad = runner.invoke(cli, ["answer", "--study", "Portraits", "--threshold", "1.5"])
    assert bad.exit_code == 2 and "threshold" in bad.output
    gone = runner.invoke(cli, ["simulate", "--remove", "--study", "Portraits"])
    assert gone.exit_code == 0 and "Removed 20 simulated ratings" in gone.output


def test_rater_models_rate_with_the_true_share_they_promise():
    """bench/assurance.py's truth: each rater model's ratings are faithful with Panel.true_share
    (over the rater population for a crowd, over the panel's own raters for a fixed panel), so
    the true boundary is the same quantity the estimator estimates."""
    from review.labeling.simulated_panel import RATER_MODELS, SHAPES, Panel, TruthShape, draw_shape

    rng = np.random.default_rng(21)
    for name, model in RATER_MODELS.items():
        panel = Panel.draw(model, rng)
        shape = TruthShape("logistic", 12.0, width=2.5)
        truth = panel.true_boundary(shape, 2.0, 30.0)
        levels = np.array([truth - 3.0, truth, truth + 3.0])
        r = panel.rate_levels(shape, levels, np.full(3, 6000), rng)
        observed = r["faithful"].reshape(3, -1).mean(axis=1)
        np.testing.assert_allclose(observed, panel.true_share(shape, levels), atol=0.02, err_msg=name)
        assert panel.true_share(shape, truth) == pytest.approx(0.8, abs=0.01)
        if model.fixed_panel:
            assert set(r["rater"]) == set(range(model.fixed_panel))  # the same raters rate everything
        else:  # a crowd answers for the population: its share is the shape's exactly
            assert truth == pytest.approx(12.0, abs=0.01)
    assert round(0.1 * RATER_MODELS["spammers_10"].pool) == int(Panel.draw(RATER_MODELS["spammers_10"],
                                                                          rng).spammer.sum())
    for kind in SHAPES:  # every shape falls and crosses h at (two-step: about at) its anchor
        s = draw_shape(kind, rng)
        x = np.linspace(0, 40, 401)
        assert np.all(np.diff(s.share(x)) <= 1e-12) and s.share(s.anchor) == pytest.approx(0.8, abs=1e-3)
