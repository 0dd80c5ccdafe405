"""The comparison viewer's server side: display copies at 512, 1024 and the stored size, and what
the rating page sends the viewer (panels, keys, clocks). The browser side (zoom, flicker, keys in
text fields, layout at 1366 x 768) is tests/test_browser_viewer.py."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from review.media.decode import encode_display_jpeg
from review.media.store import DISPLAY_FULL, DISPLAY_SIDES, ImageStore, display_tier
from tests.support import build_study, picture
from tests.support_app import app, login, viewer_data


def test_display_tier_is_the_smallest_copy_that_covers_the_pixels():
    assert DISPLAY_SIDES == (512, 1024)
    assert [display_tier(px) for px in (1, 384, 512, 513, 1024, 1025, 4000)] == \
        [512, 512, 512, 1024, 1024, DISPLAY_FULL, DISPLAY_FULL]


def test_store_keeps_display_copies_at_each_size_and_the_stored_size(tmp_path):
    store = ImageStore(tmp_path / "images")
    src = picture(3, (1500, 1000))
    stored = store.put_image(src)
    sha = stored.sha256
    for side in DISPLAY_SIDES:  # made when stored
        kept = tmp_path / "images" / "display" / str(side) / sha[:2] / f"{sha}.jpg"
        assert kept.read_bytes() == encode_display_jpeg(src, side)
        assert Image.open(io.BytesIO(kept.read_bytes())).size == (side, round(side * 2 / 3))
    full = store.display_jpeg(stored.relpath, DISPLAY_FULL)  # made on first view
    assert (tmp_path / "images" / "display" / "full" / sha[:2] / f"{sha}.jpg").read_bytes() == full
    img = Image.open(io.BytesIO(full))
    assert img.format == "JPEG" and img.size == (1500, 1000)
    assert len(full) > len(encode_display_jpeg(src, 1500))  # the zoom copy is kept at higher quality
    with pytest.raises(ValueError, match="max_side"):
        store.display_jpeg(stored.relpath, -1)


@pytest.mark.slow  # AppTest through login and four items
def test_rating_page_sends_the_viewer_its_panels_keys_and_clocks(lab):
    sid = build_study(lab, 4, raters_per_item=1, reviewers=("alice",), no_reference_every=2,
                      image_size=(640, 480))
    at = login(app().run(), "alice")
    seen = set()
    for _ in range(4):
        data = viewer_data(at)
        roles = [p["role"] for p in data["panels"]]
        assert data["item"] == str(at.session_state[f"rate:{sid}"]["cur"].assignment_id)
        assert data["keys"]["enter"] == "submit" and data["keys"]["3"] == "score:3"
        assert {data["keys"][k] for k in "idtal"} == {f"flag:{f}" for f in (
            "identity_changed", "invented_detail", "text_changed", "artifacts", "still_blurry")}
        assert data["leave_on_enter"] == "comment" and data["below"] == "action_row"
        assert set(data["streamlit_keys"]) == {"1", "2", "3", "4", "5", "enter", "s", "u", "g"}
        item_s, session_s = data["clock"]
        assert 0 <= item_s <= session_s < 60
        # 640 px photos: the 1024 px copy is the photo itself, never scaled up.
        assert data["side"] == 1024 and all((p["w"], p["h"], p["full"]) == (640, 480, 640)
                                            for p in data["panels"])
        if roles == ["blurred", "restoration"]:  # no sharp original: nothing to toggle
            assert "b" not in data["keys"]
            seen.add("no reference")
        else:
            assert roles == ["reference", "restoration"] and data["keys"]["b"] == "show_blurred"
            at.toggle(key="show_blurred").set_value(True).run()
            blurred = viewer_data(at)
            assert [p["role"] for p in blurred["panels"]] == ["reference", "blurred", "restoration"]
            assert blurred["panels"][1]["title"] == "Blurred input"
            at.toggle(key="show_blurred").set_value(False).run()
            seen.add("reference")
        labels = [c.label for c in at.checkbox]
        assert "Identity changed (I)" in labels and "Still blurry (L)" in labels
        at.button(key="score:3").click().run()
        at.button(key="submit").click().run()
    assert seen == {"reference", "no reference"}
    assert viewer_data(at) is None and "finished your queue" in " ".join(s.value for s in at.success)
