// The desk page (FIG. 13-18): every camera's thumbnails, newest first, kept live by
// Server-Sent Events. The grid is virtualised: only the rows near the viewport exist in
// the DOM, and each thumbnail is its own lazily loaded URL, so 5,000 pictures stay quick.
"use strict";

const MARK_TEXT = {
  local: "On this card", received: "Received", transferring: "Transferring",
  requested: "Reserved", refused: "Not necessary", smaller: "Smaller copy", dispersed: "Dispersed",
  held: "Held here", thumbnail: "Thumbnail",
};
const FRESH_MS = 4000; // how long a new arrival stays highlighted (FIG. 13B)
const OVERSCAN_ROWS = 2;

const desk = (window.desk = {
  tiles: new Map(),      // id -> tile JSON
  order: [],             // ids shown, newest first, after the camera filter
  selected: new Set(),
  fresh: new Map(),      // id -> highlight end (performance.now())
  elements: new Map(),   // id -> DOM element, only for rendered tiles
  status: null,
  version: 0,
  filter: "",            // origin device id, or "" for every camera
  photographer: "",      // a photographer's name (text, never HTML), or "" for everyone
  photographers: new Map(), // name -> pictures by them
  ftp: null,             // this node's FTP door: {port, cameras: [...]}, or null
  pairs: new Map(),      // RAW+JPEG pair key -> ids of its pictures here
  log: [],               // [ms, id, mark, done, total]: every mark change the page showed
  focus: null,           // the picture the keyboard acts on (desk_cull.js)
  focusIndex: 0,         // its place in desk.order, kept to refocus when it is filtered out
  filters: { rating: 0, color: "", tagged: "", state: "", since: 0 }, // desk_filters.js
  sort: "capture-desc",
  labels: {},            // colour class "1".."8" -> its label (text)
  codes: {},             // Photo Mechanic code replacements: code -> text
  hooks: { tiles: [], focus: [], marks: [] }, // desk.on(kind, fn): for export and delivery
  metrics: { firstTiles: null, allLoaded: null, renders: 0, renderMs: null, orderMs: null },
  loaded: false,
});

desk.on = (kind, fn) => { desk.hooks[kind].push(fn); };
function emit(kind, value) {
  for (const fn of desk.hooks[kind]) {
    try { fn(value); } catch (err) { console.error(err); }
  }
}

const $ = (id) => document.getElementById(id);
const grid = $("grid");
let geometry = { cols: 1, tileW: 190, tileH: 292, gap: 10 };
let renderQueued = false;

// --- formatting ------------------------------------------------------------------------

function formatSize(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(1) + " GB";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + " MB";
  if (n >= 1e3) return Math.round(n / 1e3) + " kB";
  return n + " B";
}

function formatTime(t) {
  if (t == null) return "time unknown";
  const d = new Date(t * 1000);
  const pad = (x) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function exposureLine(m) {
  const parts = [];
  if (m.exposure_text) parts.push(m.exposure_text + " s");
  if (m.f_number) parts.push("f/" + m.f_number);
  if (m.iso) parts.push("ISO " + m.iso);
  return parts.length ? parts.join(" · ") : "exposure unknown";
}

function cameraName(id) {
  const cams = (desk.status && desk.status.cameras) || [];
  const cam = cams.find((c) => c.id === id);
  return cam ? cam.name : id.slice(0, 12);
}

function photographerOf(t) {
  const name = t.meta && t.meta.photographer;
  return typeof name === "string" && name ? name : "";
}

function markText(t) {
  if (t.mark === "transferring" && t.progress) {
    return `${MARK_TEXT.transferring} ${Math.floor((100 * t.progress[0]) / t.progress[1])}%`;
  }
  if (t.mark === "smaller" && t.smaller && t.smaller.long_edge) return `${MARK_TEXT.smaller}, ${t.smaller.long_edge} px`;
  return MARK_TEXT[t.mark] || t.mark;
}

// A smaller copy says it is one wherever it is shown (issue 17): "smaller copy, 1024 px".
function copyText(c) {
  return c && c.long_edge ? `smaller copy, ${c.long_edge} px` : "smaller copy";
}

// What the tile's purple line says: where the original is, or what stands in for it (the
// badge says "Smaller copy, 1024 px"; the line above, the original's size).
function whereText(t) {
  const c = t.smaller;
  if (t.mark === "smaller") return `copy: ${formatSize(c.size)}${c.kept ? " · kept" : ""}`;
  if (t.mark === "dispersed") return "held by " + (t.holders.join(", ") || "?");
  if (t.mark === "held") return "held here for " + t.held_for + (t.sealed ? " · sealed, no key here" : "");
  if (t.mark === "requested" && t.note) return "waits: " + t.note; // the whole reason in the tooltip
  if (c) return c.kept ? `+ kept copy${c.long_edge ? `, ${c.long_edge} px` : ""}` : `+ ${copyText(c)}`;
  return "";
}

// --- ordering and layout ---------------------------------------------------------------------

function when(t) { return t.time ?? t.arrived ?? t.original_at ?? 0; }

function newestFirst(a, b) {
  return when(b) - when(a) || (a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : 0) || b.seq - a.seq;
}

function rebuildOrder() {
  const started = performance.now();
  const shown = [];
  for (const t of desk.tiles.values()) {
    if (desk.filter && t.origin !== desk.filter) continue;
    if (desk.photographer && photographerOf(t) !== desk.photographer) continue;
    if (!passesFilters(t)) continue; // desk_filters.js: rating, colour, tag, state, time
    shown.push(t);
  }
  shown.sort(SORTS[desk.sort] || newestFirst);
  desk.order = shown.map((t) => t.id);
  desk.metrics.orderMs = performance.now() - started;
  keepFocus(); // desk_cull.js
  scheduleCounts();
  layout();
}

function layout() {
  const style = getComputedStyle(document.documentElement);
  const tileW = parseInt(style.getPropertyValue("--tile-w")) || 190;
  const tileH = parseInt(style.getPropertyValue("--tile-h")) || 292;
  const gap = parseInt(style.getPropertyValue("--gap")) || 10;
  const cols = Math.max(1, Math.floor((grid.clientWidth + gap) / (tileW + gap)));
  geometry = { cols, tileW, tileH, gap };
  const rows = Math.ceil(desk.order.length / cols);
  grid.style.height = rows ? rows * (tileH + gap) - gap + "px" : "0";
  $("empty").hidden = desk.tiles.size > 0;
  render();
}

function queueRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; render(); });
}

// Only the rows in (or near) the viewport are in the DOM.
function render() {
  const started = performance.now();
  const { cols, tileW, tileH, gap } = geometry;
  const rowH = tileH + gap;
  const top = window.scrollY - (grid.getBoundingClientRect().top + window.scrollY);
  const firstRow = Math.max(0, Math.floor(top / rowH) - OVERSCAN_ROWS);
  const lastRow = Math.ceil((top + window.innerHeight) / rowH) + OVERSCAN_ROWS;
  const end = Math.min(desk.order.length, (lastRow + 1) * cols);
  const keep = new Set();
  const now = performance.now();
  for (let i = firstRow * cols; i < end; i++) {
    const id = desk.order[i];
    const t = desk.tiles.get(id);
    keep.add(id);
    let el = desk.elements.get(id);
    if (!el) {
      el = createTile(t);
      desk.elements.set(id, el);
      grid.appendChild(el);
    }
    if (el._v !== t.v) fillTile(el, t);
    const x = (i % cols) * (tileW + gap), y = Math.floor(i / cols) * rowH;
    if (el._x !== x || el._y !== y) {
      el.style.transform = `translate(${x}px, ${y}px)`;
      el._x = x; el._y = y;
    }
    el.classList.toggle("selected", desk.selected.has(id));
    el.classList.toggle("focus", desk.focus === id);
    const until = desk.fresh.get(id);
    if (until !== undefined && until < now) desk.fresh.delete(id);
    el.classList.toggle("fresh", until !== undefined && until >= now);
  }
  for (const [id, el] of desk.elements) {
    if (!keep.has(id)) { el.remove(); desk.elements.delete(id); }
  }
  desk.metrics.renders++;
  desk.metrics.renderMs = performance.now() - started;
  if (desk.metrics.firstTiles === null && keep.size) desk.metrics.firstTiles = performance.now();
}

function createTile(t) {
  const el = document.createElement("div");
  el.className = "tile";
  el.dataset.id = t.id;
  el.innerHTML = `
    <label class="pick"><input type="checkbox" aria-label="select"></label>
    <div class="thumb"><img loading="lazy" decoding="async" alt="">
      <div class="marks"><span class="stars">${[1, 2, 3, 4, 5].map((n) => `<b data-n="${n}">☆</b>`).join("")}</span>
        <span class="color"></span><button class="tag" title="tag (T)">Tag</button></div></div>
    <div class="badge"></div>
    <div class="bar"><span></span></div>
    <div class="info">
      <div class="name"></div><div class="time"></div><div class="camera"></div>
      <div class="exposure"></div><div class="metering"></div><div class="where"></div>
    </div>
    <div class="actions">
      <button class="refuse" title="the original is not needed (FIG. 13B)">Not necessary</button>
      <button class="keep" title="keep this smaller copy once its original is here (K)">Keep copy</button>
      <a class="open" href="#">Open</a><a class="download" href="#">Download</a>
    </div>`;
  const img = el.querySelector("img");
  img.src = "/thumb/" + t.id;
  img.alt = t.name;
  el.querySelector("input").addEventListener("change", () => toggle(t.id));
  el.querySelector(".thumb").addEventListener("click", (e) => {
    if (e.target.closest(".marks")) return;
    const tile = desk.tiles.get(t.id);
    setFocus(t.id);
    if (hasOriginal(tile)) openViewer(tile); else toggle(t.id);
  });
  el.querySelector(".thumb").addEventListener("dblclick", () => openViewer(desk.tiles.get(t.id)));
  el.addEventListener("click", (e) => { if (!e.target.closest(".thumb, .actions, .pick")) setFocus(t.id); });
  for (const star of el.querySelectorAll(".stars b")) {
    star.addEventListener("click", () => {
      const n = parseInt(star.dataset.n);
      setFocus(t.id);
      setMarks([t.id], { rating: desk.tiles.get(t.id).marks.rating === n ? 0 : n });
    });
  }
  el.querySelector(".tag").addEventListener("click", () => {
    setFocus(t.id);
    setMarks([t.id], { tagged: !desk.tiles.get(t.id).marks.tagged });
  });
  el.querySelector(".refuse").addEventListener("click", () => post("/api/refuse", { ids: [t.id] }));
  el.querySelector(".keep").addEventListener("click", () => {
    setFocus(t.id);
    const copy = desk.tiles.get(t.id).smaller;
    if (copy) keepCopies([t.id], !copy.kept);
  });
  el.querySelector(".open").addEventListener("click", (e) => { e.preventDefault(); openViewer(desk.tiles.get(t.id)); });
  return el;
}

// Something to open: the original, or the smaller copy kept instead (the server picks).
function hasOriginal(t) { return t.mark === "received" || t.mark === "local" || t.mark === "smaller"; }

function fillTile(el, t) {
  el._v = t.v;
  el.dataset.mark = t.mark;
  el.className = "tile mark-" + t.mark;
  fillMarks(el, t); // desk_cull.js: stars, colour class, tag
  el.title = t.note || "";
  el.querySelector(".badge").textContent = markText(t);
  el.querySelector(".bar span").style.width = t.progress ? (100 * t.progress[0]) / t.progress[1] + "%" : (hasOriginal(t) ? "100%" : "0");
  el.querySelector(".name").textContent = t.name;
  el.querySelector(".time").textContent = formatTime(t.time);
  const paired = t.meta.pair && (desk.pairs.get(t.meta.pair) || new Set()).size > 1;
  el.querySelector(".camera").textContent =
    `${formatSize(t.size)} · ${cameraName(t.origin)}${paired ? " · RAW+JPEG" : ""}`;
  el.querySelector(".exposure").textContent = exposureLine(t.meta);
  el.querySelector(".metering").textContent = "metering: " + (t.meta.metering_mode || "unknown");
  const where = el.querySelector(".where");
  where.textContent = where.title = whereText(t); // the whole line, where the tile cuts it
  const ok = hasOriginal(t);
  el.querySelector(".open").hidden = !ok || Boolean(t.smaller); // room for Keep: the thumbnail opens it
  const dl = el.querySelector(".download");
  dl.hidden = !ok;
  dl.href = `/original/${t.id}?download=1`;
  el.querySelector(".refuse").hidden = ok || ["refused", "dispersed", "held", "smaller"].includes(t.mark);
  const keep = el.querySelector(".keep");
  keep.hidden = !t.smaller;
  keep.textContent = t.smaller && t.smaller.kept ? "Copy kept" : "Keep copy";
  keep.setAttribute("aria-pressed", t.smaller && t.smaller.kept ? "true" : "false");
  el.querySelector("input").checked = desk.selected.has(t.id);
  if (window.fillStrip) window.fillStrip(el, t); // desk_strips.js: a movie's strip and its marks
}

// --- data -------------------------------------------------------------------------------------

function apply(tiles, status, live) {
  let reorder = false;
  const now = performance.now();
  let newPhotographer = false;
  for (const t of tiles) {
    const old = desk.tiles.get(t.id);
    if (old && old.v >= t.v) continue;
    if (!old && t.meta && t.meta.pair) {
      const ids = desk.pairs.get(t.meta.pair) || new Set();
      ids.add(t.id);
      desk.pairs.set(t.meta.pair, ids);
      for (const other of ids) { const el = desk.elements.get(other); if (el) el._v = -1; }
    }
    if (!old) {
      const who = photographerOf(t);
      if (who) {
        desk.photographers.set(who, (desk.photographers.get(who) || 0) + 1);
        newPhotographer = true;
      }
    }
    if (!old || when(old) !== when(t)) reorder = true;
    if (old && filtersActive() && (old.mark !== t.mark || JSON.stringify(old.marks) !== JSON.stringify(t.marks))) reorder = true;
    if (!old && live) desk.fresh.set(t.id, now + FRESH_MS);
    if (!old || old.mark !== t.mark || (t.progress && (!old.progress || old.progress[0] !== t.progress[0]))) {
      desk.log.push([Math.round(now), t.id, t.mark, t.progress ? t.progress[0] : null, t.progress ? t.progress[1] : null]);
    }
    desk.tiles.set(t.id, t);
  }
  if (status) showStatus(status);
  if (newPhotographer) showPhotographers();
  if (reorder) rebuildOrder(); else { queueRender(); scheduleCounts(); }
  emit("tiles", tiles);
}

function showStatus(s) {
  if (desk.status && s.epoch !== desk.status.epoch) {
    location.reload(); // the desk restarted: its versions count from 0 again
    return;
  }
  const changedCameras = JSON.stringify(s.cameras) !== JSON.stringify(desk.status && desk.status.cameras);
  desk.status = s;
  if (s.labels && JSON.stringify(s.labels) !== JSON.stringify(desk.labels)) showLabels(s.labels);
  $("me").textContent = s.me ? "— " + s.me.name : "";
  desk.version = Math.max(desk.version, s.version);
  $("busy").hidden = !s.transferring;
  $("busy-count").textContent = s.transferring ? `(${s.transferring})` : "";
  const m = s.marks || {};
  $("counts").textContent = `${s.total} pictures · ${(m.received || 0) + (m.local || 0)} originals here · ` +
    `${m.requested || 0} reserved · ${m.refused || 0} not necessary`;
  if (changedCameras) {
    const select = $("camera");
    const current = select.value;
    select.innerHTML = "";
    select.add(new Option(`All cameras (${s.total})`, ""));
    for (const c of s.cameras) {
      select.add(new Option(`${c.name}${c.me ? " (this desk)" : ""} (${c.count})${c.connected || c.me ? "" : " · offline"}`, c.id));
    }
    select.value = current;
    for (const el of desk.elements.values()) el._v = -1; // camera names may have changed
    queueRender();
  } else {
    const all = $("camera").options[0];
    if (all) all.text = `All cameras (${s.total})`;
  }
}

// Names are the users' text: options and cells get them as text, never as HTML.
function showPhotographers() {
  const select = $("photographer");
  const current = select.value;
  select.replaceChildren(new Option("All photographers", ""));
  const names = [...desk.photographers.keys()].sort((a, b) => a.localeCompare(b));
  for (const name of names) select.add(new Option(`${name} (${desk.photographers.get(name)})`, name));
  select.value = names.includes(current) ? current : "";
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function showFtp(ftp) {
  desk.ftp = ftp;
  $("ftp").hidden = !ftp;
  if (!ftp) return;
  $("ftp-port").textContent = `(port ${ftp.port})`;
  const body = $("ftp-rows");
  body.replaceChildren();
  for (const c of ftp.cameras) {
    const row = body.insertRow();
    row.dataset.account = c.account;
    cell(row, c.account, "account");
    cell(row, c.photographer || "—", "photographer");
    cell(row, String(c.frames), "frames");
    cell(row, c.last_frame ? `${c.last_frame} · ${formatTime(c.last_frame_at)}` : "none yet", "last");
    cell(row, c.uploading.map((u) => `${u.name} (${formatSize(u.bytes)})`).join(", ") || "—",
         c.uploading.length ? "uploading" : "idle");
  }
}

// The FTP door's cameras change without a new picture (an upload under way): asked every second.
async function followFtp() {
  try {
    const r = await fetch("/api/ftp");
    const answer = await r.json();
    showFtp(answer.ftp);
    if (!answer.ftp) return; // this node has no FTP door
  } catch (err) {
    // the desk is restarting: try again
  }
  setTimeout(followFtp, 1000);
}

async function loadAll() {
  let offset = 0;
  for (;;) {
    const r = await fetch(`/api/tiles?offset=${offset}&limit=2000`);
    const page = await r.json();
    if (offset === 0) desk.version = page.version;
    apply(page.tiles, page, false);
    offset += page.tiles.length;
    if (!page.tiles.length || offset >= page.total) break;
  }
  desk.metrics.allLoaded = performance.now();
  desk.loaded = true;
  follow();
}

function follow() {
  const source = new EventSource(`/api/events?since=${desk.version}`);
  source.onmessage = (e) => {
    const batch = JSON.parse(e.data);
    apply(batch.tiles, batch.status, true);
  };
  source.onerror = () => { source.close(); setTimeout(follow, 1000); };
}

// POST JSON; the answer, or null after showing the desk's reason (as text) in the toast.
async function post(path, body) {
  try {
    const r = await fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const answer = await r.json();
    if (!r.ok) throw new Error(answer.error || r.statusText);
    return answer;
  } catch (err) {
    showToast(String(err.message || err));
    return null;
  }
}

function showToast(text) {
  const toast = $("toast");
  toast.textContent = text;
  toast.hidden = false;
  clearTimeout(showToast.timer);
  showToast.timer = setTimeout(() => { toast.hidden = true; }, 6000);
}

// --- selection, transfer, viewer ----------------------------------------------------------------

function toggle(id) {
  if (desk.selected.has(id)) desk.selected.delete(id); else desk.selected.add(id);
  selectionChanged();
}

function selectionChanged() {
  const n = desk.selected.size;
  $("transfer").disabled = $("refuse-selected").disabled = $("clear").disabled = !n;
  $("transfer").textContent = n ? `Transfer (${n})` : "Transfer";
  queueRender();
}

// The long edge and quality as typed: the desk checks them (the words of `cammesh request`),
// and a refusal leaves the selection as it was, to mend the field and press Transfer again.
function smallerChoice(defaultEdge) {
  const edge = $("long-edge").value.trim(), quality = $("quality").value.trim();
  return { max_side: edge || defaultEdge || null, quality: quality || null };
}

$("transfer").addEventListener("click", async () => {
  const ids = [...desk.selected];
  if (!(await post("/api/request", { ids, ...smallerChoice() }))) return;
  for (const id of ids) desk.selected.delete(id);
  selectionChanged();
});

// Keep smaller copies once their originals are here, or let them go (as `cammesh keep`).
async function keepCopies(ids, keep) {
  return ids.length ? post("/api/keep", { ids, keep }) : null;
}
desk.keepCopies = keepCopies;
$("refuse-selected").addEventListener("click", () => {
  const ids = [...desk.selected];
  desk.selected.clear();
  selectionChanged();
  post("/api/refuse", { ids });
});
$("clear").addEventListener("click", () => { desk.selected.clear(); selectionChanged(); });
$("camera").addEventListener("change", (e) => { desk.filter = e.target.value; rebuildOrder(); });
$("photographer").addEventListener("change", (e) => { desk.photographer = e.target.value; rebuildOrder(); });

window.addEventListener("scroll", queueRender, { passive: true });
window.addEventListener("resize", layout);
setInterval(() => { if (desk.fresh.size) queueRender(); }, 500); // let highlights fade
// Once every script of the page has run (desk_filters.js, desk_cull.js, desk_captions.js add
// what the first answer already uses).
document.addEventListener("DOMContentLoaded", () => { loadAll(); followFtp(); });
