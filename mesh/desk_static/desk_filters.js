// Filters and order (issue 19): rating at least N, colour class, tagged, state, capture time;
// sort by capture time or by arrival; every option shows how many pictures it would keep.
// The camera and photographer filters are desk.js's own (desk.filter, desk.photographer).
"use strict";

// A tile's transfer mark, grouped as the editor names the states.
const STATES = {
  thumbnail: ["thumbnail", "requested"], transferring: ["transferring"], here: ["local", "received"],
  smaller: ["smaller"], refused: ["refused"], held: ["held"], dispersed: ["dispersed"],
};
const STATE_TEXT = {
  thumbnail: "Thumbnail only", transferring: "Transferring", here: "Original here",
  smaller: "Smaller copy", refused: "Not necessary", held: "Held here", dispersed: "Dispersed",
};
const TIMES = { 600: "Last 10 minutes", 3600: "Last hour", 10800: "Last 3 hours", 86400: "Last 24 hours" };

function arrivedAt(t) { return t.arrived ?? t.original_at ?? 0; }

const SORTS = {
  "capture-desc": newestFirst,
  "capture-asc": (a, b) => newestFirst(b, a),
  "arrival-desc": (a, b) => arrivedAt(b) - arrivedAt(a) || newestFirst(a, b),
  "arrival-asc": (a, b) => arrivedAt(a) - arrivedAt(b) || newestFirst(b, a),
};

function stateOf(t) {
  for (const [state, marks] of Object.entries(STATES)) if (marks.includes(t.mark)) return state;
  return "";
}

function filtersActive() {
  const f = desk.filters;
  return Boolean(f.rating || f.color || f.tagged || f.state || f.since);
}

// One filter's test; `skip` leaves that filter out (to count what each option would keep).
function passesFilters(t, skip) {
  const f = desk.filters, m = t.marks || {};
  if (skip !== "rating" && f.rating && !((m.rating || 0) >= f.rating)) return false;
  if (skip !== "color" && f.color && (f.color === "none" ? m.color != null : String(m.color) !== f.color)) return false;
  if (skip !== "tagged" && f.tagged && Boolean(m.tagged) !== (f.tagged === "yes")) return false;
  if (skip !== "state" && f.state && stateOf(t) !== f.state) return false;
  if (skip !== "since" && f.since && !(when(t) >= Date.now() / 1000 - f.since)) return false;
  return true;
}

// --- counts per filter ----------------------------------------------------------------------

let countsQueued = null;
function scheduleCounts() {
  if (countsQueued === null) countsQueued = setTimeout(() => { countsQueued = null; showCounts(); }, 150);
}

// Each option's count: the pictures the camera and photographer choice show that this option
// would keep, the other filters as they are.
function showCounts() {
  const started = performance.now();
  const n = { rating: [0, 0, 0, 0, 0, 0], color: {}, tagged: { yes: 0, no: 0 }, state: {}, since: {} };
  let all = { rating: 0, color: 0, tagged: 0, state: 0, since: 0 };
  const now = Date.now() / 1000;
  for (const t of desk.tiles.values()) {
    if (desk.filter && t.origin !== desk.filter) continue;
    if (desk.photographer && photographerOf(t) !== desk.photographer) continue;
    const m = t.marks || {};
    if (passesFilters(t, "rating")) { all.rating++; for (let r = 1; r <= (m.rating || 0); r++) n.rating[r]++; }
    if (passesFilters(t, "color")) { all.color++; const c = m.color == null ? "none" : String(m.color); n.color[c] = (n.color[c] || 0) + 1; }
    if (passesFilters(t, "tagged")) { all.tagged++; n.tagged[m.tagged ? "yes" : "no"]++; }
    if (passesFilters(t, "state")) { all.state++; const s = stateOf(t); n.state[s] = (n.state[s] || 0) + 1; }
    if (passesFilters(t, "since")) {
      all.since++;
      for (const span of Object.keys(TIMES)) if (when(t) >= now - span) n.since[span] = (n.since[span] || 0) + 1;
    }
  }
  const label = (select, value, text) => {
    const option = [...select.options].find((o) => o.value === value);
    if (option) option.textContent = text;
  };
  const r = $("f-rating"), c = $("f-color"), g = $("f-tagged"), s = $("f-state"), w = $("f-time");
  label(r, "0", `Any rating (${all.rating})`);
  for (let k = 1; k <= 5; k++) label(r, String(k), `${"★".repeat(k)}${k < 5 ? " or more" : ""} (${n.rating[k]})`);
  label(c, "", `Any colour (${all.color})`);
  label(c, "none", `No colour (${n.color.none || 0})`);
  for (let k = 1; k <= 8; k++) label(c, String(k), `${k} ${desk.labels[k] || ""} (${n.color[k] || 0})`);
  label(g, "", `Tagged or not (${all.tagged})`);
  label(g, "yes", `Tagged (${n.tagged.yes})`);
  label(g, "no", `Not tagged (${n.tagged.no})`);
  label(s, "", `Any state (${all.state})`);
  for (const state of Object.keys(STATES)) label(s, state, `${STATE_TEXT[state]} (${n.state[state] || 0})`);
  label(w, "0", `Any time (${all.since})`);
  for (const [span, text] of Object.entries(TIMES)) label(w, span, `${text} (${n.since[span] || 0})`);
  $("shown").textContent = `${desk.order.length} shown`;
  desk.metrics.countsMs = performance.now() - started;
}

function fillFilterOptions() {
  const add = (select, value, text) => select.add(new Option(text, value));
  const r = $("f-rating"), c = $("f-color"), g = $("f-tagged"), s = $("f-state"), w = $("f-time");
  add(r, "0", "Any rating");
  for (let k = 1; k <= 5; k++) add(r, String(k), "★".repeat(k));
  add(c, "", "Any colour");
  add(c, "none", "No colour");
  for (let k = 1; k <= 8; k++) add(c, String(k), String(k));
  add(g, "", "Tagged or not"); add(g, "yes", "Tagged"); add(g, "no", "Not tagged");
  add(s, "", "Any state");
  for (const state of Object.keys(STATES)) add(s, state, STATE_TEXT[state]);
  add(w, "0", "Any time");
  for (const [span, text] of Object.entries(TIMES)) add(w, span, text);
}

fillFilterOptions();
const FILTER_INPUTS = { "f-rating": "rating", "f-color": "color", "f-tagged": "tagged", "f-state": "state", "f-time": "since" };
for (const [id, key] of Object.entries(FILTER_INPUTS)) {
  $(id).addEventListener("change", (e) => {
    const v = e.target.value;
    desk.filters[key] = key === "rating" || key === "since" ? parseInt(v) || 0 : v;
    rebuildOrder();
  });
}
$("sort").addEventListener("change", (e) => { desk.sort = e.target.value; rebuildOrder(); });
