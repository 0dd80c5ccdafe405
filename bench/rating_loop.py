"""Benchmark: the reviewer's rating loop on a large study (100k items, 1M existing ratings).

(a) Server side: `next_assignment` + `submit`, each in its own write transaction as the app does
    them, per rating; p50/p95 over 200 ratings. Goal: p95 <= 10 ms.
(b) Real browser (Debian's Chromium driven by Playwright against `streamlit run`, 1440 x 1000):
    time from the submit key press (Enter) to the next item's images painted in the comparison
    viewer (review/ui/viewer.py), stored images 1024 px, the display copy the viewer asks for
    (printed with the data-URL payload per item); p50/p95 over 100 ratings, side by side and
    again with the zoom on (Z pressed once, kept from item to item).
    Goal: p50 <= 120 ms, p95 <= 250 ms. Measured in the page: a capturing keydown listener
    stamps the Enter press, a MutationObserver waits for the restoration <img> to get a new
    src, then for every image in the rating area to finish loading, then two
    requestAnimationFrame callbacks (the second runs after the frame with the new images was
    painted).
    Baseline, same run, same database: the identical rating UI without `st.fragment`
    (REVIEW_UI_NO_FRAGMENT=1, read by review/ui/rate.py), i.e. a naive full-script rerun
    per key press.

What the numbers taught (measured while building it, on this shared 2-core box):
- Streamlit's default runner.postScriptGC runs gc.collect(2) after every script run, holding the
  GIL ~80 ms while the run's last messages wait to be sent; turning it off (.streamlit/config.toml)
  took the browser p50 from ~150 to ~87 ms. Found by logging the server's send times next to the
  page's websocket receive times: the script finished at ~33 ms, its last deltas left at ~115 ms.
- A claim used to re-walk the reviewer's done items and count their history (~14 ms per rating
  after 1,500 items); a cursor and counter on the cohort row make it history-independent.
- Server work per Enter is ~20-70 ms (submit, claim, one JPEG encode per new image); the rest is
  the browser's main thread rendering the rerun's elements, so the page keeps few elements.
- Images as data URLs beat /media URLs (p50 183 vs 232 ms in one A/B): no second round trip.
- Writing st.query_params on every item cost a history update per key press; drafts are now
  written to the URL only when they change.
- st.fragment vs a full rerun is ~1.0x here: the rating area is nearly the whole page, so a full
  rerun only adds the sidebar, navigation and two small queries. The fragment's value is that
  page-level work (e.g. a heavier sidebar) never lands on the hot path.

Run: .venv/bin/python bench/rating_loop.py [--items 100000] [--ratings 1000000]
     [--server-n 200] [--browser-n 100] [--data DIR] [--skip-browser] [--images 300] [--quick]
(--quick: 5k items, 50k ratings, 60 images, 30 browser ratings: a smoke run, not the goal.)
The database is built in DIR (default: a temporary folder, removed afterwards) with SQLAlchemy
Core executemany; images are distinct variants of scikit-image's sample photos at 1024 px.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from machine import describe, load  # noqa: E402  (bench/machine.py, beside this script)
from PIL import Image, ImageFilter  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from db.models import (  # noqa: E402
    Assignment,
    DegradedImage,
    GuidelineVersion,
    Rating,
    Restoration,
    SourceImage,
    Study,
    StudyItem,
    User,
)
from review.accounts.users import add_user, hash_password  # noqa: E402
from review.config import load_settings  # noqa: E402
from review.database import Lab, open_lab  # noqa: E402
from review.labeling.assignment import next_assignment, remaining_for  # noqa: E402
from review.labeling.guidelines.files import sync_all  # noqa: E402
from review.labeling.ratings import Submission, submit  # noqa: E402
from review.labeling.study import StudyConfig, ensure_study, order_key  # noqa: E402

N_IMAGES = 300
IMAGE_SIDE = 1024  # stored size: the 1024 px display copy is what a 1440 px window gets
N_RATERS = 100
RATERS_PER_ITEM = 12  # every item keeps free slots for the benchmark reviewers
PASSWORD = "bench-pass-1"
CHUNK = 50_000

# In-page latency probe: resolves with ms from the Enter keydown to the next item painted, or -1
# after 10 s. The next item is complete when the "Item k of n" line has changed, the script run
# has finished (stApp's data-test-script-state is back to notRunning: every element of the run
# has arrived) and every image has loaded; then two requestAnimationFrame callbacks, the second
# of which runs after the frame showing the new item was painted.
PROBE = """() => new Promise((resolve) => {
  let t0 = null, done = false, waiting = false;
  const onKey = (e) => { if (e.key === 'Enter' && t0 === null) t0 = performance.now(); };
  window.addEventListener('keydown', onKey, {capture: true});
  const finish = (ms) => { if (done) return; done = true; obs.disconnect();
      window.removeEventListener('keydown', onKey, {capture: true}); resolve(ms); };
  const itemText = () => { const el = Array.from(document.querySelectorAll("[data-testid='stMarkdown']"))
      .find((e) => e.innerText.startsWith('Item ')); return el ? el.innerText : null; };
  const oldItem = itemText();
  const idle = () => document.querySelector(
      "[data-testid='stApp'][data-test-script-state='notRunning']") !== null;
  const check = () => {
    if (t0 === null || done || waiting || itemText() === oldItem || !idle()) return;
    const pending = Array.from(document.querySelectorAll(".fv-panel:not([hidden]) img"))
        .filter((i) => !(i.complete && i.naturalWidth > 0));
    waiting = true;
    Promise.all(pending.map((img) => new Promise((ok) => {
        img.addEventListener('load', ok, {once: true}); img.addEventListener('error', ok, {once: true}); })))
      .then(() => requestAnimationFrame(() => requestAnimationFrame(() => finish(performance.now() - t0))));
  };
  const obs = new MutationObserver(check);
  obs.observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true,
                              attributeFilter: ['src', 'data-test-script-state']});
  setTimeout(() => finish(-1), 10000);
})"""


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def variants(n: int, max_side: int = IMAGE_SIDE) -> list[Image.Image]:
    """n distinct photos: random crops of scikit-image's bundled samples (no download)."""
    from skimage import data

    bases = [Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB")
             for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "text")]
    rng = random.Random(7)
    out = []
    for i in range(n):
        base = bases[i % len(bases)]
        w, h = base.size
        cw, ch = int(w * rng.uniform(0.6, 0.95)), int(h * rng.uniform(0.6, 0.95))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        img = base.crop((x, y, x + cw, y + ch))
        scale = max_side / max(img.size)
        out.append(img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                              Image.BILINEAR))
    return out


def build_database(lab: Lab, n_items: int, n_ratings: int, n_images: int = N_IMAGES) -> int:
    """A study of n_items over N_IMAGES image triples, n_ratings done ratings by 100 reviewers."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with lab.write() as s:
        gv = next(v for v in sync_all(s) if (v.slug, v.version) == ("fidelity", 3))
        study = ensure_study(s, StudyConfig(name="Bench: 100k items", raters_per_item=RATERS_PER_ITEM,
                                            gold_rate=0.1), gv)
        study_id, gv_id = study.id, gv.id
        pw = hash_password(PASSWORD)
        s.execute(insert(User), [
            {"username": f"r{i:03d}", "display_name": f"Rater {i}", "role": "reviewer",
             "password_hash": pw, "active": True, "created_at": now} for i in range(N_RATERS)])
        for name in ("bench-server", "bench-frag", "bench-zoom", "bench-full"):
            add_user(s, name, PASSWORD, "reviewer")
        raters = list(s.scalars(select(User.id).where(User.username.like("r0%")).order_by(User.username)))

        triples = []
        for i, sharp in enumerate(variants(n_images)):
            blurred = sharp.filter(ImageFilter.GaussianBlur(1.5 + i % 4))
            restored = blurred.filter(ImageFilter.UnsharpMask(3, 160))
            src, deg, res = (lab.store.put_image(im) for im in (sharp, blurred, restored))
            row = SourceImage(sha256=src.sha256, path=src.relpath, width=sharp.width, height=sharp.height,
                              is_reference=i % 25 != 0)
            s.add(row)
            s.flush()
            d = DegradedImage(source_id=row.id, recipe_key="bench", kind="defocus", level=2.0 + i % 4,
                              sha256=deg.sha256, path=deg.relpath)
            s.add(d)
            s.flush()
            triples.append((d.id, res.sha256, res.relpath))

    with lab.engine.begin() as conn:
        for start in range(0, n_items, CHUNK):
            conn.execute(insert(Restoration), [
                {"degraded_id": triples[i % len(triples)][0],
                 "method": "hidden_reference" if i % 10 == 0 else "wiener", "params": {},
                 "params_key": f"p{i}", "sha256": triples[i % len(triples)][1],
                 "path": triples[i % len(triples)][2],
                 "provenance": {}, "metrics": {}, "is_smoke_test": False, "created_at": now}
                for i in range(start, min(n_items, start + CHUNK))])
        restoration_ids = list(conn.scalars(select(Restoration.id).order_by(Restoration.id)))
        for start in range(0, n_items, CHUNK):
            conn.execute(insert(StudyItem), [
                {"study_id": study_id, "restoration_id": rid, "order_key": order_key(study_id, rid),
                 "is_gold": i % 10 == 0, "expected_min": 4 if i % 10 == 0 else None,
                 "expected_max": 5 if i % 10 == 0 else None, "created_at": now}
                for i, rid in enumerate(restoration_ids[start:start + CHUNK], start=start)])
        item_ids = list(conn.scalars(select(StudyItem.id).where(StudyItem.study_id == study_id)
                                     .order_by(StudyItem.id)))
        per_item = max(1, min(10, n_ratings // max(1, n_items)))
        rng = np.random.default_rng(0)
        pairs = [(item, raters[(j * 7 + t) % N_RATERS], t) for j, item in enumerate(item_ids)
                 for t in range(per_item)][:n_ratings]
        scores = rng.integers(1, 6, len(pairs))
        times = rng.integers(1500, 20000, len(pairs))
        done = now - timedelta(days=1)
        for start in range(0, len(pairs), CHUNK):
            chunk = pairs[start:start + CHUNK]
            conn.execute(insert(Assignment), [
                {"item_id": item, "reviewer_id": rid, "status": "done", "leased_at": done,
                 "lease_expires_at": done + timedelta(minutes=20), "completed_at": done, "slot": slot}
                for item, rid, slot in chunk])
            conn.execute(insert(Rating), [
                {"item_id": item, "reviewer_id": rid, "author_id": rid, "source": "reviewer",
                 "score": int(scores[start + k]), "flags": [], "comment": "", "guideline_version_id": gv_id,
                 "time_taken_ms": int(times[start + k]), "active": True, "created_at": done}
                for k, (item, rid, _slot) in enumerate(chunk)])
    with lab.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    # Settle the bulk load: its WAL would otherwise be checkpointed (and fsynced) inside the
    # first timed ratings, which a lab in steady state never pays. Outside any transaction.
    raw = lab.engine.raw_connection()
    try:
        raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        raw.close()
    return study_id


def server_bench(lab: Lab, study_id: int, n: int) -> dict[str, list[float]]:
    """Per rating: next_assignment (claim) then submit, each its own transaction, as the app does."""
    with lab.read() as s:
        uid = s.scalar(select(User.id).where(User.username == "bench-server"))
    out: dict[str, list[float]] = {"next": [], "submit": [], "total": []}
    for i in range(n + 5):
        t0 = time.perf_counter()
        with lab.write() as s:
            lease = next_assignment(s, s.get(Study, study_id), uid)
        t1 = time.perf_counter()
        with lab.write() as s:
            submit(s, lease.assignment_id, uid, Submission(score=1 + i % 5, time_taken_ms=1000,
                                                           client_token=uuid.uuid4().hex))
        t2 = time.perf_counter()
        if i >= 5:  # warm-up excluded
            out["next"].append((t1 - t0) * 1000)
            out["submit"].append((t2 - t1) * 1000)
            out["total"].append((t2 - t0) * 1000)
    t0 = time.perf_counter()
    with lab.read() as s:
        remaining_for(s, s.get(Study, study_id), uid)
    out["remaining_for"] = [(time.perf_counter() - t0) * 1000]
    return out


SHOWN = """() => { const imgs = Array.from(document.querySelectorAll('.fv-panel:not([hidden]) img'));
  const r = imgs[imgs.length - 1];
  return {w: r.naturalWidth, h: r.naturalHeight, n: imgs.length,
          bytes: imgs.reduce((t, i) => t + i.getAttribute('src').length, 0)}; }"""


def browser_bench(data_dir: Path, username: str, n: int, no_fragment: bool,
                  zoom: bool = False) -> tuple[list[float], dict]:
    """Enter press -> next item's images painted, in ms, for n ratings after 3 warm-up ratings;
    and what the viewer showed last (display copy size, images, data-URL bytes)."""
    from tests.support_browser import chromium_page, log_in, streamlit_server, wait_idle

    env = {"REVIEW_UI_NO_FRAGMENT": "1" if no_fragment else "0"}
    out: list[float] = []
    with streamlit_server(data_dir, env) as url, chromium_page() as page:
        log_in(page, url, username, PASSWORD)
        if zoom:
            page.keyboard.press("z")
            page.wait_for_function("document.querySelector('.fv-viewer').dataset.zoom !== '1.000'")
            wait_idle(page)
        for i in range(n + 3):
            score = 1 + i % 5
            page.keyboard.press(str(score))
            page.get_by_text(f"Your score: {score} ·").wait_for()
            wait_idle(page)
            page.evaluate(f"() => {{ window.__probe = ({PROBE})(); }}")
            page.keyboard.press("Enter")
            ms = page.evaluate("window.__probe")
            if ms < 0:
                raise RuntimeError(f"the next item did not appear within 10 s (rating {i + 1})")
            page.get_by_text("Your score: —").wait_for()
            wait_idle(page)
            if i >= 3:
                out.append(float(ms))
        shown = page.evaluate(SHOWN)
        shown["zoom"] = page.evaluate("document.querySelector('.fv-viewer').dataset.zoom")
    return out, shown


def shown_line(shown: dict) -> str:
    return (f"    served: {shown['n']} images, display copy {shown['w']}x{shown['h']} px, "
            f"{shown['bytes'] / 1024:.0f} KB of data URLs per item, zoom {shown['zoom']}")


def summary(name: str, values: list[float]) -> str:
    return (f"{name:<34} p50 {pct(values, 50):8.2f} ms   p95 {pct(values, 95):8.2f} ms   "
            f"mean {statistics.fmean(values):8.2f} ms   n={len(values)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--ratings", type=int, default=1_000_000)
    ap.add_argument("--server-n", type=int, default=200)
    ap.add_argument("--browser-n", type=int, default=100)
    ap.add_argument("--data", type=Path, default=None, help="keep the database in this folder")
    ap.add_argument("--skip-browser", action="store_true")
    ap.add_argument("--images", type=int, default=N_IMAGES, help="distinct photos (each stored thrice)")
    ap.add_argument("--quick", action="store_true", help="a small smoke run (not the goal's size)")
    args = ap.parse_args()
    n_images = args.images
    if args.quick:
        args.items, args.ratings, args.server_n, args.browser_n, n_images = 5_000, 50_000, 50, 30, 60
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up even when piped

    data_dir = args.data or Path(tempfile.mkdtemp(prefix="rating-loop-"))
    os.environ["REVIEW_DATA_DIR"] = str(data_dir)
    os.environ.pop("REVIEW_DATABASE_URL", None)
    try:
        print(describe())
        lab = open_lab(load_settings(), migrate=True)
        t0 = time.perf_counter()
        with lab.read() as s:
            existing = s.scalar(select(Study.id).where(Study.name == "Bench: 100k items"))
        study_id = existing or build_database(lab, args.items, args.ratings, n_images)
        with lab.read() as s:
            n_items = s.query(StudyItem).filter(StudyItem.study_id == study_id).count()
            n_ratings = s.query(Rating).count()
            gv = s.scalar(select(GuidelineVersion.slug))
        print(f"database: {n_items} items, {n_ratings} ratings (guideline {gv}), "
              f"{'reused' if existing else 'built'} in {time.perf_counter() - t0:.1f} s at {data_dir}")

        server = server_bench(lab, study_id, args.server_n)
        print(f"\n(a) server side, per rating (SQLite, WAL); {load()}:")
        print(summary("next_assignment", server["next"]))
        print(summary("submit", server["submit"]))
        print(summary("next_assignment + submit", server["total"]))
        print(f"    goal p95 <= 10 ms: {'met' if pct(server['total'], 95) <= 10 else 'NOT met'}")
        print(f"    remaining_for (the 'of n' count, once per session): {server['remaining_for'][0]:.1f} ms")

        if args.skip_browser:
            return
        lab.engine.dispose()
        print(f"\n(b) real browser, Enter press -> next item's images painted; {load()}:")
        frag, shown = browser_bench(data_dir, "bench-frag", args.browser_n, no_fragment=False)
        print(summary("st.fragment (the app)", frag))
        print(shown_line(shown))
        zoomed, zshown = browser_bench(data_dir, "bench-zoom", args.browser_n, no_fragment=False, zoom=True)
        print(summary("st.fragment, zoomed in (Z)", zoomed))
        print(shown_line(zshown))
        full, _ = browser_bench(data_dir, "bench-full", args.browser_n, no_fragment=True)
        print(summary("full-script rerun (baseline)", full))
        print(f"    ratio baseline / fragment: p50 {pct(full, 50) / pct(frag, 50):.2f}x, "
              f"p95 {pct(full, 95) / pct(frag, 95):.2f}x")
        ok = all(pct(v, 50) <= 120 and pct(v, 95) <= 250 for v in (frag, zoomed))
        print(f"    goal p50 <= 120 ms and p95 <= 250 ms (side by side and zoomed): "
              f"{'met' if ok else 'NOT met'}; {load()}")
    finally:
        if args.data is None:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
