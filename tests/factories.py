"""Build studies straight in the database (no images needed) for assignment and rating tests."""

from __future__ import annotations

from sqlalchemy.orm import Session

from db.models import DegradedImage, GuidelineVersion, Restoration, SourceImage, Study, User
from review.labeling.study import StudyConfig, add_item, ensure_study


def make_study(session: Session, n_items: int, *, raters_per_item: int = 2, gold_every: int = 0,
               n_reviewers: int = 3, gold_rate: float = 0.0, name: str = "s") -> tuple[Study, list[User]]:
    gv = GuidelineVersion(slug=f"g-{name}", version=1, title="t", body_md="b", content_sha256="0" * 64)
    src = SourceImage(sha256=f"{name:a>64}"[:64], path="aa/a.png", width=8, height=8)
    session.add_all([gv, src])
    session.flush()
    deg = DegradedImage(source_id=src.id, recipe_key="k", kind="defocus", level=3.0,
                        sha256="b" * 64, path="bb/b.png")
    session.add(deg)
    session.flush()
    study = ensure_study(session, StudyConfig(name=name, raters_per_item=raters_per_item,
                                              gold_rate=gold_rate), gv)
    for i in range(n_items):
        gold = bool(gold_every) and i % gold_every == 0
        method = "hidden_reference" if gold else "wiener"
        res = Restoration(degraded_id=deg.id, method=method, params_key=f"p{i}",
                          sha256="c" * 64, path="cc/c.png")
        session.add(res)
        session.flush()
        add_item(session, study, res, is_gold=gold, expected=(4, 5) if gold else None)
    users = [User(username=f"{name}-r{i}", role="reviewer", password_hash="x")
             for i in range(n_reviewers)]
    session.add_all(users)
    session.flush()
    return study, users
