"""The Streamlit app through AppTest: login, role-based navigation, the rating loop (rate, skip,
undo, stale items, server-side drafts that survive a lost session), admin pages, blindness and
guideline safety.

Data is built with the domain functions and real small images in the store. AppTest runs the
whole script (no real partial reruns or keyboard shortcuts): tests/test_browser.py covers those.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from db.models import (
    Assignment,
    GuidelineVersion,
    Rating,
    Restoration,
    SourceImage,
    Study,
    StudyItem,
    utcnow,
)
from review.accounts.users import add_user
from review.database import Lab
from review.labeling.assignment import next_assignment
from review.labeling.guidelines.render import html_or_unsafe_links
from review.labeling.ratings import Submission, submit
from tests.support import PASSWORD, build_study
from tests.support_app import APP, TIMEOUT, app, login, texts, viewer_data

# Every test drives the whole app through AppTest (a second or more each): the slow lane.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
HIDDEN = ("hidden_reference", "richardson", "defocus", "motion_line", "camera_shake", "gaussian",
          ".png", "skimage", "sd15", "wiener", "params")


# ----------------------------------------------------------------------------- AppTest helpers


def registered_pages(at: AppTest) -> set[str]:
    """The page files st.navigation registered for this session."""
    return {Path(str(info["script_path"])).name for info in at._registered_pages.values()}


def rate_state(at: AppTest, study_id: int) -> dict:
    return at.session_state[f"rate:{study_id}"]


def current_aid(at: AppTest, study_id: int) -> int:
    return rate_state(at, study_id)["cur"].assignment_id


def ratings_of(lab: Lab, username: str) -> list[Rating]:
    from db.models import User

    with lab.sessions() as s:
        uid = s.scalar(select(User.id).where(User.username == username))
        return list(s.scalars(select(Rating).where(Rating.reviewer_id == uid).order_by(Rating.id)))


# ----------------------------------------------------------------------------- tests


def test_first_page_loads_without_torch(lab):
    """The login page must not pull in torch (a multi-second import on every fresh process)."""
    code = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({APP!r}, default_timeout=60).run()\n"
        "assert not at.exception, [e.value for e in at.exception]\n"
        "assert at.text_input(key='login_username') is not None\n"
        "print('TORCH_LOADED' if 'torch' in sys.modules else 'TORCH_ABSENT')\n"
    )
    env = {**os.environ, "REVIEW_DATA_DIR": str(lab.settings.data_dir)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TORCH_ABSENT" in proc.stdout


def test_login_failure_then_success(lab):
    sid = build_study(lab, 3)
    at = app().run()
    login(at, "alice", "wrong-password")
    assert "Unknown username or wrong password" in at.error[0].value
    assert "user" not in at.session_state
    login(at, "alice")
    assert at.session_state["user"].username == "alice"
    assert "Item 1 of 3" in texts(at)
    assert current_aid(at, sid) > 0


def test_login_rate_limit(lab):
    build_study(lab, 1)
    at = app().run()
    for _ in range(5):
        login(at, "bob", "nope-nope")
        assert "Unknown username" in at.error[0].value
    login(at, "bob")  # the right password, but too many recent failures
    assert "Too many failed logins" in at.error[0].value
    assert "user" not in at.session_state


def test_navigation_per_role(lab):
    build_study(lab, 2)
    at = login(app().run(), "alice")
    assert registered_pages(at) == {"rate.py", "try_photo.py"}  # try_photo waits for her work
    assert "Users" not in texts(at) and "Studies" not in texts(at)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("review/ui/pages/users.py")

    admin = login(app().run(), "admin")
    assert registered_pages(admin) == {"study.py", "study_setup.py", "generate.py", "guideline_admin.py",
                                       "qa.py", "disagreements.py", "analysis.py", "users.py", "audit.py",
                                       "rate.py", "answer.py", "try_photo.py", "crowd.py"}
    assert "SD1.5 weights: not configured (set REVIEW_SD15_PATH)" in texts(admin)
    admin.switch_page("review/ui/pages/users.py").run()
    assert admin.title[0].value == "Users"


def test_every_page_of_each_role_renders(lab):
    """Each role's pages open from the navigation without an error, each with its title."""
    build_study(lab, 3, gold_every=3)
    with lab.sessions() as s, s.begin():
        add_user(s, "quinn", PASSWORD, "qa", "Quinn QA")
    expected = {"admin": {"Studies", "Study setup", "Generate restorations", "Guidelines", "QA review",
                          "Disagreements", "Analysis", "Users", "Audit log", "How far can it go?",
                          "Try your photo", "Crowd"},
                "qa": {"QA review", "Disagreements", "Guidelines", "How far can it go?", "Try your photo"}}
    for username, titles in (("admin", expected["admin"]), ("quinn", expected["qa"])):
        at = login(app().run(), username)
        seen = set()
        for page in sorted(registered_pages(at)):
            at.switch_page(f"review/ui/pages/{page}").run()
            assert not at.exception, (page, [e.value for e in at.exception])
            assert not at.error, (page, [e.value for e in at.error])
            if at.title:
                seen.add(at.title[0].value)
        assert titles <= seen, (username, seen)
    assert registered_pages(login(app().run(), "quinn")) == {"qa.py", "disagreements.py", "answer.py",
                                                             "try_photo.py", "guidelines.py"}


def test_pages_recheck_the_role(lab):
    """Even run directly, an admin page refuses a reviewer."""
    build_study(lab, 1)
    at = login(app().run(), "alice")
    user = at.session_state["user"]
    for page in ("users.py", "study.py", "guidelines.py", "qa.py", "analysis.py", "generate.py",
                 "guideline_admin.py", "study_setup.py", "disagreements.py", "audit.py",
                 "answer.py", "crowd.py"):
        direct = AppTest.from_file(str(ROOT / "review/ui/pages" / page), default_timeout=TIMEOUT)
        direct.session_state["user"] = user
        direct.run()
        assert "not available to the reviewer role" in direct.error[0].value, page
        assert not direct.dataframe and not direct.title
    direct = AppTest.from_file(str(ROOT / "review/ui/pages/try_photo.py"), default_timeout=TIMEOUT)
    direct.session_state["user"] = user
    direct.run()  # a reviewer with work left in Portraits is told why, and sees nothing else
    assert direct.error[0].value.startswith("Try your photo opens once you have no rating work left "
                                            "(still open for you: Portraits)")
    assert not direct.title and not direct.get("file_uploader")


def test_rating_an_item_records_score_flags_guideline_and_time(lab):
    sid = build_study(lab, 4)
    at = login(app().run(), "alice")
    aid = current_aid(at, sid)
    token = at.session_state["tokens"][aid]  # made when the item was shown
    rate_state(at, sid)["cur"].shown_at -= 3.0  # the reviewer looked for three seconds
    at.button(key="score:4").click().run()
    assert "Your score: 4 · Perceptible but not annoying" in texts(at)
    at.checkbox(key="flag:artifacts").check().run()
    at.text_input(key="comment").input("halo around the cup").run()
    at.button(key="submit").click().run()
    assert not at.exception
    (rating,) = ratings_of(lab, "alice")
    with lab.sessions() as s:
        gv = s.get(Study, sid).guideline_version
        assignment = s.get(Assignment, aid)
        assert (gv.slug, gv.version) == ("fidelity", 3)
    assert rating.score == 4 and rating.flags == ["artifacts"] and rating.comment == "halo around the cup"
    assert rating.guideline_version_id == gv.id and rating.active
    assert 3000 <= rating.time_taken_ms < 60_000
    assert rating.client_token == token
    assert assignment.status == "done"
    assert "Item 2 of 4" in texts(at)
    assert current_aid(at, sid) != aid
    # the next item starts with a clean form
    assert at.checkbox(key="flag:artifacts").value is False and at.text_input(key="comment").value == ""
    assert "Your score: —" in texts(at)


def test_submit_without_score_warns_and_records_nothing(lab):
    build_study(lab, 2)
    at = login(app().run(), "alice")
    at.button(key="submit").click().run()
    assert "Pick a score first" in at.warning[0].value
    assert ratings_of(lab, "alice") == []


def test_skip_needs_a_reason_and_hands_the_item_back(lab):
    sid = build_study(lab, 3)
    at = login(app().run(), "alice")
    aid = current_aid(at, sid)
    at.button(key="skip").click().run()
    assert "Pick a reason" in at.warning[0].value
    at.selectbox(key="skip_reason").select("cannot judge").run()
    at.button(key="skip").click().run()
    with lab.sessions() as s:
        a = s.get(Assignment, aid)
        assert (a.status, a.skip_reason) == ("skipped", "cannot judge")
    assert ratings_of(lab, "alice") == []
    assert "Item 2 of 3" in texts(at)


def test_undo_supersedes_and_never_deletes(lab):
    sid = build_study(lab, 3)
    at = login(app().run(), "alice")
    aid = current_aid(at, sid)
    at.button(key="score:2").click().run()
    at.checkbox(key="flag:identity_changed").check().run()
    at.button(key="submit").click().run()
    assert "Item 2 of 3" in texts(at)
    at.button(key="undo").click().run()
    assert "withdrawn" in at.info[0].value
    assert current_aid(at, sid) == aid  # the same item comes back, pre-filled
    assert "Your score: 2 · Annoying" in texts(at)
    assert at.checkbox(key="flag:identity_changed").value is True
    at.button(key="score:3").click().run()
    at.button(key="submit").click().run()
    old, new = ratings_of(lab, "alice")
    assert (old.score, old.active) == (2, False)
    assert (new.score, new.active, new.supersedes_id) == (3, True, old.id)
    assert new.client_token != old.client_token


def test_stale_item_warns_and_moves_on(lab):
    sid = build_study(lab, 3, raters_per_item=1)
    at = login(app().run(), "alice")
    aid = current_aid(at, sid)
    with lab.sessions() as s, s.begin():  # alice's lease ran out and bob took the slot
        a = s.get(Assignment, aid)
        slot, a.status, a.slot = a.slot, "expired", None
        s.flush()
        from db.models import User

        bob = s.scalar(select(User.id).where(User.username == "bob"))
        s.add(Assignment(item_id=a.item_id, reviewer_id=bob, status="leased", slot=slot,
                         lease_expires_at=utcnow().replace(year=2100)))
    at.button(key="score:5").click().run()
    at.button(key="submit").click().run()
    assert "went to another reviewer" in at.warning[0].value
    assert ratings_of(lab, "alice") == []
    assert current_aid(at, sid) != aid


def test_draft_survives_a_lost_session(lab):
    """A server restart loses session_state; the draft comes back from the server after login,
    the comment whole, and nothing of it is ever in the URL."""
    sid = build_study(lab, 3)
    at = login(app().run(), "alice")
    aid = current_aid(at, sid)
    comment = "the left eye is a different shape; " * 35  # 1,225 characters
    at.button(key="score:3").click().run()
    at.checkbox(key="flag:invented_detail").check().run()
    at.text_input(key="comment").input(comment).run()
    assert dict(at.query_params) == {}

    fresh = login(app().run(), "alice")  # a new server session
    assert current_aid(fresh, sid) == aid
    assert "Your score: 3 · Slightly annoying" in texts(fresh)
    assert fresh.checkbox(key="flag:invented_detail").value is True
    assert fresh.text_input(key="comment").value == comment and len(comment) == 1225
    fresh.button(key="submit").click().run()
    (rating,) = ratings_of(lab, "alice")
    assert (rating.score, rating.flags, rating.comment) == (3, ["invented_detail"], comment.strip())


def test_a_draft_is_the_reviewers_own(lab):
    sid = build_study(lab, 3)
    alice = login(app().run(), "alice")
    aid = current_aid(alice, sid)
    alice.button(key="score:1").click().run()
    bob = login(app().run(), "bob")
    assert current_aid(bob, sid) != aid
    assert "Your score: —" in texts(bob)


def test_reviewer_page_is_blind(lab):
    sid = build_study(lab, 8, gold_every=2, gold_rate=0.5, no_reference_every=4)
    with lab.sessions() as s, s.begin():  # bob rated everything first: alice must not see it
        from db.models import User

        bob = s.scalar(select(User.id).where(User.username == "bob"))
        study = s.get(Study, sid)
        while (lease := next_assignment(s, study, bob)) is not None:
            submit(s, lease.assignment_id, bob, Submission(score=2, comment="bob-was-here"))
        shas = set(s.scalars(select(Restoration.sha256))) | set(s.scalars(select(SourceImage.sha256)))
    at = login(app().run(), "alice")
    seen_reference = seen_no_reference = False
    for _ in range(8):
        if rate_state(at, sid)["cur"] is None:
            break
        page = texts(at).lower()
        for word in HIDDEN + ("gold", "expected", "bob", "sample "):
            assert word not in page, word
        assert not any(sha in page for sha in shas)
        urls = [panel["src"] for panel in viewer_data(at)["panels"]]
        assert len(urls) == 2 and all(url.startswith("data:image/jpeg;base64,") for url in urls)
        no_ref = "no sharp original" in page
        seen_no_reference |= no_ref
        seen_reference |= not no_ref
        at.button(key="score:4").click().run()
        at.button(key="submit").click().run()
    assert seen_reference and seen_no_reference
    assert "finished your queue" in texts(at)


def test_images_are_served_presized_and_cached(lab):
    sid = build_study(lab, 2, image_size=(1200, 900))
    at = login(app().run(), "alice")
    cur = rate_state(at, sid)["cur"]
    from review.media.decode import encode_display_jpeg
    from review.ui.display import display_jpeg

    def sent() -> tuple[bytes, Image.Image]:  # the restoration, as the browser receives it
        panel = viewer_data(at)["panels"][-1]
        assert panel["role"] == "restoration" and panel["full"] == 1200
        raw = base64.b64decode(panel["src"].removeprefix("data:image/jpeg;base64,"))
        img = Image.open(io.BytesIO(raw))
        assert img.format == "JPEG" and (panel["w"], panel["h"]) == img.size
        return raw, img

    # Until the browser says how many pixels it shows, the 1024 px copy.
    raw, img = sent()
    assert img.size == (1024, 768) and viewer_data(at)["side"] == 1024
    assert raw == display_jpeg(lab.store, cur.item.restoration, 1024)  # the cached bytes
    # The viewer reports the device pixels a panel shows (its `px` state): the smallest copy
    # that covers them, up to the stored size when zoomed in.
    for px, size in ((400, (512, 384)), (1000, (1024, 768)), (2400, (1200, 900)), (900, (1024, 768))):
        at.session_state["viewer"] = {"px": px}
        at.run()
        assert sent()[1].size == size, px
    t0 = time.perf_counter()
    encode_display_jpeg(lab.store.open_image(cur.item.restoration.relpath), 512)
    fresh = time.perf_counter() - t0
    t0 = time.perf_counter()
    display_jpeg(lab.store, cur.item.restoration)
    assert time.perf_counter() - t0 < fresh / 5  # a cache hit, not a re-encode of 1200 x 900


def test_gold_accuracy_for_admins_only(lab):
    sid = build_study(lab, 8, gold_every=2, raters_per_item=2)
    from db.models import User

    with lab.sessions() as s, s.begin():
        study = s.get(Study, sid)
        for name, gold_score in (("alice", 5), ("bob", 2)):
            uid = s.scalar(select(User.id).where(User.username == name))
            while (lease := next_assignment(s, study, uid)) is not None:
                gold = s.get(StudyItem, lease.item_id).is_gold
                submit(s, lease.assignment_id, uid, Submission(score=gold_score if gold else 3,
                                                               time_taken_ms=2000))
    admin = login(app().run(), "admin")
    assert admin.title[0].value == "Studies"
    table = admin.dataframe[0].value.set_index("reviewer")
    assert table.loc["alice", "rated"] == 8 and table.loc["alice", "gold rated"] == 4
    assert table.loc["alice", "gold accuracy"] == "100%"
    assert table.loc["bob", "gold accuracy"] == "0%"
    assert "16 / 16" in texts(admin)

    reviewer = login(app().run(), "alice")
    page = texts(reviewer).lower()
    assert "gold" not in page and "accuracy" not in page and "finished your queue" in page


def test_admin_manages_users(lab):
    build_study(lab, 1)
    admin = login(app().run(), "admin")
    admin.switch_page("review/ui/pages/users.py").run()
    admin.text_input(key="new_username").input("dora")
    admin.text_input(key="new_display").input("Dora D")
    admin.text_input(key="new_password").input("short")
    _submit_form(admin, "Add user")
    assert "at least 8 characters" in admin.error[0].value
    admin.text_input(key="new_username").input("dora")
    admin.text_input(key="new_password").input("dora-pass-1")
    _submit_form(admin, "Add user")
    assert "User 'dora' added as reviewer." in admin.success[0].value
    login(app().run(), "dora", "dora-pass-1")

    admin.selectbox(key="reset_user").select("dora")
    admin.text_input(key="reset_password_value").input("dora-pass-2")
    _submit_form(admin, "Reset password")
    assert "Password of 'dora' reset." in admin.success[0].value
    dora = login(app().run(), "dora", "dora-pass-2")
    assert dora.session_state["user"].username == "dora"

    admin.selectbox(key="active_user").select("admin")
    _submit_form(admin, "Deactivate")
    assert "cannot deactivate your own account" in admin.error[0].value
    admin.selectbox(key="active_user").select("dora")
    _submit_form(admin, "Deactivate")
    assert "deactivated" in admin.success[0].value
    dora.run()  # her open session ends at the next page run
    assert "user" not in dora.session_state
    refused = login(app().run(), "dora", "dora-pass-2")
    assert "deactivated" in refused.error[0].value


def test_admin_changes_roles_and_sees_deactivated_reviewers(lab):
    from db.models import Study, User
    from review.accounts.users import set_active

    sid = build_study(lab, 2)
    with lab.sessions() as s, s.begin():
        alice = s.scalar(select(User.id).where(User.username == "alice"))
        lease = next_assignment(s, s.get(Study, sid), alice)
        submit(s, lease.assignment_id, alice, Submission(score=4))
        set_active(s, "alice", False)
    admin = login(app().run(), "admin")
    admin.switch_page("review/ui/pages/study.py").run()
    assert not admin.exception, admin.exception
    reviewers = admin.dataframe[0].value
    assert reviewers["reviewer"].tolist() == ["alice (deactivated)"] and reviewers["rated"].tolist() == [1]

    admin.switch_page("review/ui/pages/users.py").run()
    _submit_form(admin, "Change role")
    assert admin.error[0].value == "Choose a user and a role."
    admin.selectbox(key="role_user").select("admin")
    admin.selectbox(key="role_value").select("reviewer")
    _submit_form(admin, "Change role")
    assert "'admin' is the last active admin" in admin.error[0].value
    admin.selectbox(key="role_user").select("bob")
    admin.selectbox(key="role_value").select("qa")
    _submit_form(admin, "Change role")
    assert admin.success[0].value == "User 'bob' is now qa."
    roles = admin.dataframe[0].value.set_index("username")["role"]
    assert roles["bob"] == "qa" and roles["admin"] == "admin"
    with lab.sessions() as s:
        assert s.scalar(select(User.role).where(User.username == "bob")) == "qa"


def _submit_form(at: AppTest, label: str) -> None:
    (button,) = [b for b in at.get("button") if b.label == label]
    button.click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]


# ----------------------------------------------------------------------------- guideline safety


HOSTILE = """# Rules
<script>alert(1)</script>
Look closely. <img src=x onerror="alert(2)"> Then rate.
<scr<script>ipt>alert(3)</script>
[click](javascript:alert(4))

![Score 5 example](examples/score5_face.jpg)
![secret](../../../../etc/passwd)
![remote](https://evil.example/x.jpg)
"""


def test_guideline_html_is_never_rendered(lab):
    hostile = GuidelineVersion(slug="fidelity-x", version=1, title="Fidelity <b>x</b>", body_md=HOSTILE,
                               content_sha256="1" * 64, assets_dir="fidelity/v3")
    build_study(lab, 2, guideline=hostile)
    at = login(app().run(), "alice")
    assert "Guideline: **fidelity-x v1**" in texts(at)
    at.button(key="guideline").click().run()
    assert not at.exception
    bodies = [m.value for m in at.markdown]
    assert any("Look closely." in b for b in bodies)
    for m in at.markdown:
        assert m.proto.allow_html is False
        # Raw HTML is shown as text (escaped), never parsed as a tag; the javascript: link is gone.
        assert "<" not in m.value and "javascript:" not in m.value
        assert not html_or_unsafe_links(m.value)
    assert any(img.value for img in at.image)  # the allowed example, shown from disk
    captions = " ".join(c.value for c in at.caption)
    assert "not shown" in captions and "passwd" in captions
    assert "evil.example" not in " ".join(u for img in at.image for u in img.value)


def test_streamlit_config_keeps_the_post_run_gc_off():
    """runner.postScriptGC's full collection after each run delayed every next item by ~80 ms
    (bench/rating_loop.py); the project's config must keep it off."""
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["runner"]["postScriptGC"] is False


def test_end_of_queue_message_reads_right_after_a_question_mark():
    from review.demo import DEMO_STUDY
    from review.ui.rate import finished_message

    message = finished_message(DEMO_STUDY)
    assert message == "You have finished your queue in “Demo: how far can restoration go?”. Thank you!"
    assert "go?." not in message
