"""The demo's SIMULATED crowd study (review.demo.seed_crowd_demo): its participants are simulated
accounts that cannot sign in, cleansing has judged their sessions (spammers and straight-liners
left out), the pools comparison shows the crowd's used ratings closer to the in-house team than
all of them, and seeding again adds nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db.models import Participant, Study, User
from review.analysis import crowd_cleansing as cc
from review.analysis.export import default_ratings, ratings_frame, ratings_in_use
from review.analysis.pools_compared import compare_pools
from review.analysis.qa_stats import gold_accuracy, gold_accuracy_read
from review.database import Lab
from review.demo import CROWD_POOL, CROWD_STUDY, seed_crowd_demo
from review.labeling.guidelines.files import GUIDELINES_DIR, authored_dir, sync_all


@pytest.mark.slow
def test_the_crowd_demo_is_simulated_cleansed_and_compared(lab: Lab) -> None:
    with lab.write() as s:
        sync_all(s, GUIDELINES_DIR, authored_dir(lab.settings.data_dir))
    line = seed_crowd_demo(lab)
    assert "30 SIMULATED participants" in line
    assert seed_crowd_demo(lab).endswith("already seeded.")
    with lab.read() as s:
        study = s.scalar(select(Study).where(Study.name == CROWD_STUDY))
        users = s.scalars(select(User).join(Participant, Participant.user_id == User.id)).all()
        assert len(users) == 30 and all(u.simulated and u.password_hash == "!" for u in users)
        decisions = cc.current_decisions(s, study.id)
        gold_used, read = gold_accuracy_read(s, study.id, "reviewer")
        gold_all = gold_accuracy(s, study.id, "reviewer", "all")
        frame = ratings_frame(s, study)
        costs = cc.pool_costs(s, study.id)
    assert len(decisions) == 30
    # gold accuracy reads used ratings by default and says so; per rater "all" keeps everyone's record
    assert read == "used" and len(gold_all) > len(gold_used)
    assert {d.outcome for d in decisions.values()} == {"accept_use", "accept_no_use", "reject"}
    assert default_ratings(frame) == "used"
    crowd_all = next(f for f in compare_pools(frame, costs, bootstrap=0) if f.pool == CROWD_POOL)
    inhouse, crowd_used = compare_pools(ratings_in_use(frame, "used"), costs, bootstrap=0)
    assert inhouse.pool == "In-house" and crowd_used.pool == CROWD_POOL
    assert crowd_used.alpha.value > crowd_all.alpha.value
    assert crowd_used.used_share.n == 30 and crowd_used.cost_per_used_rating > 0.05
