"""A really rated study for the analysis tests (tests/test_analyst_page.py and the HTML report in
Chromium, tests/test_browser_report.py).

The study: 3 source images (face, text, face) x 2 blur kinds x 3 blur levels x 3 restorers
(wiener; sd15_img2img at strengths 0.3 and 0.6) plus a hidden-reference gold item per source and
kind; 8 reviewers randomised over 2 guideline versions x QA on/off, 4 ratings per item, rated
through the real assignment and submit functions with a known quality per item plus rater bias
and noise.
"""

from __future__ import annotations

import random

from db.models import DegradedImage, GuidelineVersion, Restoration, SourceImage, User
from review.database import Lab
from review.labeling.assignment import next_assignment
from review.labeling.ratings import Submission, submit
from review.labeling.settings import update_settings
from review.labeling.study import StudyConfig, add_item, ensure_study

STUDY = "Blur <study> & co"
N_REVIEWERS = 8
RATERS_PER_ITEM = 4


def rated_study(lab: Lab, *, seed: int = 3) -> None:
    """Build and rate the study named STUDY in the lab's (empty) database."""
    rng = random.Random(seed)
    with lab.sessions() as s, s.begin():
        gvs = [GuidelineVersion(slug="fid", version=v, title=f"v{v}", body_md="b",
                                content_sha256=str(v) * 64) for v in (1, 3)]
        s.add_all(gvs)
        s.flush()
        study = ensure_study(s, StudyConfig(name=STUDY, raters_per_item=RATERS_PER_ITEM,
                                            gold_rate=0.15), gvs[0])
        update_settings(study, guideline_version_ids=tuple(g.id for g in gvs), qa_share=0.5)
        s.flush()
        quality: dict[int, float] = {}
        k = 0
        for si, content in enumerate(("face", "text", "face")):
            src = SourceImage(sha256=f"{si:064d}", path=f"s{si}.png", width=8, height=8,
                              content=content, title=f"source {si}")
            s.add(src)
            s.flush()
            for kind in ("defocus", "motion_line"):
                for level in (2.0, 6.0, 12.0):
                    deg = DegradedImage(source_id=src.id, recipe_key=f"{kind}{level}", kind=kind,
                                        level=level, sha256="b" * 64, path="b.png")
                    s.add(deg)
                    s.flush()
                    methods = [("wiener", {}), ("sd15_img2img", {"strength": 0.3, "seed": 1}),
                               ("sd15_img2img", {"strength": 0.6, "seed": 1})]
                    if level == 2.0:
                        methods.append(("hidden_reference", {}))
                    for method, params in methods:
                        res = Restoration(degraded_id=deg.id, method=method, params=params,
                                          params_key=f"p{k}", sha256="c" * 64, path="c.png")
                        k += 1
                        s.add(res)
                        s.flush()
                        item = add_item(s, study, res)  # hidden_reference -> gold, expects 4-5
                        quality[item.id] = 5.0 if method == "hidden_reference" else \
                            5.2 - level / 4 - params.get("strength", 0.5)
        users = [User(username=f"rater<{i}>", role="reviewer", password_hash="x")
                 for i in range(N_REVIEWERS)]
        s.add_all(users)
        s.flush()
        bias = {u.id: rng.choice([-0.5, 0.0, 0.0, 0.5]) for u in users}
        active = [u.id for u in users]
        while active:  # round robin, so every reviewer (and cohort) rates
            for uid in list(active):
                lease = next_assignment(s, study, uid)
                if lease is None:
                    active.remove(uid)
                    continue
                score = round(quality[lease.item_id] + bias[uid] + rng.gauss(0, 0.6))
                submit(s, lease.assignment_id, uid, Submission(min(5, max(1, score))))
