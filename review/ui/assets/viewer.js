// The reviewer's comparison viewer (review/ui/viewer.py): a Streamlit components-v2 module, plain
// JavaScript with no build step and nothing fetched from a network.
//
// - Side by side: reference, (blurred input,) restoration, each filling an equal share of the
//   width, as tall as the window allows while the elements named by data.below stay visible.
// - Zoom and pan are one view shared by every panel (a point of the photo in normalised
//   coordinates), so the same spot of every image is under the same place of its panel.
// - Flicker: one panel, and F swaps reference and restoration in the same place.
// - Keys: Z, F, Esc here; data.keys maps other keys to Streamlit widgets (by their key) that a
//   key press clicks. A key pressed while a checkbox, button or closed select has the focus
//   still acts (focus is dropped first); text fields keep their letters, except that Enter in
//   the field named data.leave_on_enter leaves it, and digits never go into a select's search.
// - Clocks tick here, once a second, with no rerun.
// Everything lives on window.__fv: the module may be evaluated again on each render.

const G = (window.__fv = window.__fv || {
  view: { s: 1, cx: 0.5, cy: 0.5 },
  flicker: false,
  shownRole: "reference",
  item: null,
  requested: null,
  pointer: null,
});

const ZOOM_STEP = 3;
const MAX_ZOOM = 16;
const GAP = 12;
const CAPTION = 24;
const MIN_HEIGHT = 180;

function widgetClass(key) {
  return "st-key-" + String(key).trim().replace(/[^a-zA-Z0-9_-]/g, "-");
}

function build(parent) {
  let root = parent.querySelector(":scope > .fv-viewer");
  if (root) return root;
  root = document.createElement("div");
  root.className = "fv-viewer";
  root.innerHTML = `
    <div class="fv-bar">
      <button type="button" class="fv-btn" data-act="zoom" tabindex="-1">Zoom <kbd>Z</kbd></button>
      <button type="button" class="fv-btn" data-act="flicker" tabindex="-1">Flicker <kbd>F</kbd></button>
      <button type="button" class="fv-btn" data-act="sbs" tabindex="-1">Side by side <kbd>Esc</kbd></button>
      <span class="fv-level" data-testid="fv-level">fit</span>
      <span class="fv-hint">wheel or pinch zooms, drag pans</span>
      <span class="fv-clock" data-testid="fv-clock"></span>
    </div>
    <div class="fv-panels"></div>`;
  parent.appendChild(root);
  root.querySelectorAll(".fv-btn").forEach((b) => {
    b.addEventListener("mousedown", (e) => e.preventDefault()); // keep the focus where it was
    b.addEventListener("click", () => act(b.dataset.act === "sbs" ? "escape" : b.dataset.act[0]));
  });
  return root;
}

function panelsFor(root, panels) {
  const host = root.querySelector(".fv-panels");
  const roles = panels.map((p) => p.role).join(",");
  if (host.dataset.roles !== roles) {
    host.innerHTML = "";
    for (const p of panels) {
      const fig = document.createElement("figure");
      fig.className = "fv-panel";
      fig.dataset.role = p.role;
      fig.innerHTML = `<figcaption></figcaption><div class="fv-box"><img alt="" draggable="false"></div>`;
      host.appendChild(fig);
      wire(fig.querySelector(".fv-box"));
    }
    host.dataset.roles = roles;
  }
  panels.forEach((p, i) => {
    const fig = host.children[i];
    fig.querySelector("figcaption").textContent = p.title;
    const img = fig.querySelector("img");
    img.dataset.role = p.role;
    if (img.getAttribute("src") !== p.src) img.setAttribute("src", p.src);
  });
  return host;
}

function visible() {
  const figs = Array.from(G.root.querySelectorAll(".fv-panel"));
  const items = figs.map((fig, i) => ({ fig, p: G.data.panels[i] }));
  if (!G.flicker) return items;
  return items.filter((x) => x.p.role === G.shownRole);
}

function flickerRoles() {
  const roles = G.data.panels.map((p) => p.role);
  const a = roles.includes("reference") ? "reference" : "blurred";
  return [a, "restoration"];
}

function scrolledBy(el) {
  let s = window.scrollY;
  for (let e = el.parentElement; e; e = e.parentElement) s += e.scrollTop || 0;
  return s;
}

function layout() {
  if (!G.root || !G.root.isConnected) return;
  const host = G.root.querySelector(".fv-panels");
  G.root.dataset.mode = G.flicker ? "flicker" : "sbs";
  const figs = Array.from(host.children);
  const shown = visible();
  figs.forEach((fig) => { fig.hidden = !shown.some((x) => x.fig === fig); });
  for (const { fig } of shown) {
    const cap = fig.querySelector("figcaption");
    cap.classList.toggle("fv-flicker-cap", G.flicker);
  }
  const n = shown.length;
  const width = Math.max(100, (host.clientWidth - GAP * (n - 1)) / n);
  const top = host.getBoundingClientRect().top + scrolledBy(host);
  const below = G.data.below ? document.querySelector("." + widgetClass(G.data.below)) : null;
  let reserve = below ? below.getBoundingClientRect().bottom - G.root.getBoundingClientRect().bottom : 0;
  if (!(reserve > 0 && reserve < 400)) reserve = 110;
  const room = Math.max(MIN_HEIGHT, window.innerHeight - top - CAPTION - reserve - 12);
  const need = Math.max(...shown.map(({ p }) => (width * p.h) / p.w));
  const height = Math.floor(Math.min(room, need));
  for (const { fig } of shown) {
    const box = fig.querySelector(".fv-box");
    box.style.width = `${Math.floor(width)}px`;
    box.style.height = `${height}px`;
  }
  apply();
}

function geometry(box, p) {
  const W = box.clientWidth, H = box.clientHeight;
  const f = Math.min(W / p.w, H / p.h);
  const k = f * G.view.s;
  return { W, H, f, k, x0: W / 2 - G.view.cx * p.w * k, y0: H / 2 - G.view.cy * p.h * k };
}

function clampView() {
  const first = visible()[0];
  if (!first) return;
  const g = geometry(first.fig.querySelector(".fv-box"), first.p);
  const clamp = (c, span, room) => (span <= room ? 0.5 : Math.min(1 - room / 2 / span, Math.max(room / 2 / span, c)));
  G.view.cx = clamp(G.view.cx, first.p.w * g.k, g.W);
  G.view.cy = clamp(G.view.cy, first.p.h * g.k, g.H);
}

function apply() {
  clampView();
  const dpr = window.devicePixelRatio || 1;
  let need = 0;
  for (const { fig, p } of visible()) {
    const box = fig.querySelector(".fv-box");
    const img = box.querySelector("img");
    const g = geometry(box, p);
    img.style.width = `${p.w * g.f}px`;
    img.style.height = `${p.h * g.f}px`;
    img.style.transform = `translate(${g.x0}px, ${g.y0}px) scale(${G.view.s})`;
    img.classList.toggle("fv-pixels", g.k * dpr >= 2);
    // Device pixels this panel shows of the stored image: what the next display copy must cover.
    need = Math.max(need, Math.min(p.full, Math.ceil(Math.max(p.w, p.h) * g.k * dpr)));
  }
  const level = G.root.querySelector(".fv-level");
  level.textContent = G.view.s > 1.001 ? `${G.view.s.toFixed(1)}×` : "fit";
  G.root.dataset.zoom = G.view.s.toFixed(3);
  G.root.dataset.cx = G.view.cx.toFixed(4);
  G.root.dataset.cy = G.view.cy.toFixed(4);
  requestCopy(need);
}

function requestCopy(need) {
  const d = G.data;
  const tier = d.tiers.find((t) => need <= t) ?? 0;
  if (tier === d.side || tier === G.requested || !G.setState) return;
  G.requested = tier;
  G.setState("px", need);
}

function zoomAt(box, clientX, clientY, factor) {
  const first = visible().find((x) => x.fig.contains(box)) || visible()[0];
  if (!first) return;
  const b = first.fig.querySelector(".fv-box");
  const g = geometry(b, first.p);
  const r = b.getBoundingClientRect();
  const px = clientX - r.left, py = clientY - r.top;
  const u = (px - g.x0) / (first.p.w * g.k), v = (py - g.y0) / (first.p.h * g.k);
  const s = Math.min(MAX_ZOOM, Math.max(1, G.view.s * factor));
  const k = g.f * s;
  G.view = { s, cx: (g.W / 2 - (px - u * first.p.w * k)) / (first.p.w * k),
             cy: (g.H / 2 - (py - v * first.p.h * k)) / (first.p.h * k) };
  apply();
}

function panBy(dx, dy) {
  const first = visible()[0];
  if (!first) return;
  const g = geometry(first.fig.querySelector(".fv-box"), first.p);
  G.view.cx -= dx / (first.p.w * g.k);
  G.view.cy -= dy / (first.p.h * g.k);
  apply();
}

function wire(box) {
  const pointers = new Map();
  box.addEventListener("wheel", (e) => {
    e.preventDefault();
    zoomAt(box, e.clientX, e.clientY, Math.exp(-e.deltaY * 0.002));
  }, { passive: false });
  box.addEventListener("pointermove", (e) => { G.pointer = { box, x: e.clientX, y: e.clientY }; });
  box.addEventListener("pointerleave", () => { G.pointer = null; });
  box.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    box.setPointerCapture(e.pointerId);
    pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
  });
  box.addEventListener("pointermove", (e) => {
    const last = pointers.get(e.pointerId);
    if (!last) return;
    if (pointers.size === 1) {
      panBy(e.clientX - last.x, e.clientY - last.y);
    } else if (pointers.size === 2) {
      const [a, b] = Array.from(pointers.values());
      const other = a === last ? b : a;
      const before = Math.hypot(last.x - other.x, last.y - other.y);
      const after = Math.hypot(e.clientX - other.x, e.clientY - other.y);
      if (before > 0) zoomAt(box, (e.clientX + other.x) / 2, (e.clientY + other.y) / 2, after / before);
    }
    pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
  });
  const up = (e) => pointers.delete(e.pointerId);
  box.addEventListener("pointerup", up);
  box.addEventListener("pointercancel", up);
}

function toggleZoom() {
  if (G.view.s > 1.001) {
    G.view = { s: 1, cx: 0.5, cy: 0.5 };
    apply();
  } else if (G.pointer && G.pointer.box.isConnected) {
    zoomAt(G.pointer.box, G.pointer.x, G.pointer.y, ZOOM_STEP);
  } else {
    G.view = { s: ZOOM_STEP, cx: 0.5, cy: 0.5 };
    apply();
  }
}

function flick() {
  const [a, b] = flickerRoles();
  if (!G.flicker) {
    G.flicker = true;
    G.shownRole = a;
  } else {
    G.shownRole = G.shownRole === a ? b : a;
  }
  layout();
}

function clickWidget(key) {
  const host = document.querySelector("." + widgetClass(key));
  const el = host && host.querySelector("button, input");
  if (!el || el.disabled) return false;
  el.click();
  if (el.blur) el.blur();
  return true;
}

function act(k) {
  if (k === "z") toggleZoom();
  else if (k === "f") flick();
  else if (k === "escape") {
    if (!G.flicker && G.view.s <= 1.001) return false;
    G.flicker = false;
    G.view = { s: 1, cx: 0.5, cy: 0.5 };
    layout();
  } else if (G.data.keys[k]) return clickWidget(G.data.keys[k]);
  else return false;
  return true;
}

const TEXT_TYPES = new Set(["", "text", "search", "password", "email", "number", "url", "tel"]);

function fieldKind(el) {
  if (!el || !el.tagName) return null;
  if (el.isContentEditable || el.tagName === "TEXTAREA") return "text";
  if (el.tagName === "INPUT") {
    if (el.getAttribute("role") === "combobox" || el.closest("[data-testid='stSelectbox']")) {
      // A select whose menu is closed is a control (its input shows the choice), not a text field.
      return el.getAttribute("aria-expanded") === "true" ? "search" : "control";
    }
    return TEXT_TYPES.has((el.getAttribute("type") || "").toLowerCase()) ? "text" : "control";
  }
  if (["SELECT", "BUTTON"].includes(el.tagName) || ["switch", "checkbox"].includes(el.getAttribute("role"))) {
    return "control";
  }
  return null;
}

function keyName(e) {
  if (e.key === "Enter") return "enter";
  if (e.key === "Escape") return "escape";
  return e.key.length === 1 ? e.key.toLowerCase() : null;
}

function onKey(e) {
  if (!G.root || !G.root.isConnected || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
  if (document.querySelector("[role='dialog']")) return; // the guideline is open: its own keys
  const k = keyName(e);
  if (!k) return;
  const el = (e.composedPath && e.composedPath()[0]) || document.activeElement;
  const kind = fieldKind(el);
  const own = k === "z" || k === "f" || k === "escape" || !!G.data.keys[k];
  const stop = () => { e.preventDefault(); e.stopPropagation(); };
  if (kind === "text") {
    const leave = G.data.leave_on_enter && el.closest("." + widgetClass(G.data.leave_on_enter));
    if ((k === "enter" && !e.shiftKey && leave) || k === "escape") {
      stop();
      el.blur(); // the field commits its value on blur; the next Enter submits
    }
    return;
  }
  if (kind === "search") {
    if (/^[0-9]$/.test(k)) { stop(); el.blur(); act(k); }
    return;
  }
  if (kind === "control") {
    if (own && !e.shiftKey) { stop(); el.blur(); act(k); }
    return;
  }
  // Nothing focused: Streamlit's own shortcuts (data.streamlit_keys) are left to Streamlit.
  if (own && !e.shiftKey && !(G.data.streamlit_keys || []).includes(k)) {
    if (act(k)) e.preventDefault();
  }
}

function tick() {
  if (!G.root || !G.root.isConnected || !G.clock) return;
  const el = G.root.querySelector(".fv-clock");
  const gone = (performance.now() - G.clock.t0) / 1000;
  const fmt = (s) => {
    s = Math.floor(s);
    const mm = String(Math.floor((s % 3600) / 60)).padStart(s >= 3600 ? 2 : 1, "0");
    const ss = String(s % 60).padStart(2, "0");
    return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${mm}:${ss}`;
  };
  el.textContent = `this item ${fmt(G.clock.item + gone)} · session ${fmt(G.clock.session + gone)}`;
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  G.data = data;
  G.setState = setStateValue;
  G.root = build(parentElement);
  if (data.item !== G.item) {
    G.item = data.item;
    G.view = { s: G.view.s, cx: 0.5, cy: 0.5 }; // the zoom stays, the next photo starts centred
    G.shownRole = flickerRoles()[0];
  }
  if (G.requested === data.side) G.requested = null;
  panelsFor(G.root, data.panels);
  G.clock = data.clock ? { item: data.clock[0], session: data.clock[1], t0: performance.now() } : null;
  G.root.querySelector(".fv-clock").hidden = !G.clock;
  tick();
  layout();
  requestAnimationFrame(layout); // the elements below (score buttons) arrive in the same run
  if (!window.__fvWired) {
    window.__fvWired = true;
    window.addEventListener("keydown", (e) => onKey(e), true);
    window.addEventListener("resize", () => layout());
    setInterval(tick, 1000);
  }
}
