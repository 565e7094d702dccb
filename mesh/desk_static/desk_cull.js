// Keyboard culling (issue 19), as in Photo Mechanic: a focus moves over the grid with the
// arrow keys; Enter or Space opens the larger view; 0-5 stars; Shift (or Alt) + 1-8 a colour
// class (+ 0 clears it); T tags; R requests the original; N: not necessary; S a smaller copy;
// K keeps the smaller copies; C edits the caption; ? lists the keys.  Marks act on the selection when the focused picture
// is in it, else on the focused picture.  Everything here works with the mouse too.
"use strict";

const KEYS = [
  ["← → ↑ ↓", "move the focus"], ["Home / End", "first / last picture"],
  ["Page Up / Down", "a screen up / down"], ["Enter or Space", "larger view (again: close)"],
  ["0 – 5", "stars (0: none)"], ["Shift + 1 – 8", "colour class (Alt works too; + 0 clears)"],
  ["T", "tag / untag"], ["R", "request the original first"], ["N", "not necessary"],
  ["S", "ask for a smaller copy (the long edge typed, else 1024 px)"],
  ["K", "keep the smaller copy once the original is here (again: let it go)"],
  ["C", "edit the caption"], ["X", "select / unselect"],
  ["?", "this list"], ["Esc", "close, or leave a text field"],
];

// --- focus ----------------------------------------------------------------------------------

function setFocus(id) {
  if (id == null || desk.focus === id) { if (id != null) revealFocus(); return; }
  desk.focus = id;
  desk.focusIndex = Math.max(0, desk.order.indexOf(id));
  revealFocus();
  queueRender();
  emit("focus", id);
}

// After the order changed (a filter, a new picture), keep the focus on its picture, or on the
// one that took its place when the filter hid it.
function keepFocus() {
  if (desk.focus === null) return;
  const i = desk.order.indexOf(desk.focus);
  if (i >= 0) { desk.focusIndex = i; return; }
  const next = desk.order.length ? desk.order[Math.min(desk.focusIndex, desk.order.length - 1)] : null;
  desk.focus = next;
  emit("focus", next);
}

function moveFocus(step) {
  if (!desk.order.length) return;
  const i = desk.focus === null ? -1 : desk.order.indexOf(desk.focus);
  const to = i < 0 ? 0 : Math.max(0, Math.min(desk.order.length - 1, i + step));
  setFocus(desk.order[to]);
  if (!$("viewer").hidden) openViewer(desk.tiles.get(desk.order[to]));
}

// Scroll just enough that the focused tile is in sight below the sticky bar.
function revealFocus() {
  const i = desk.order.indexOf(desk.focus);
  if (i < 0) return;
  const { cols, tileH, gap } = geometry;
  const y = grid.getBoundingClientRect().top + window.scrollY + Math.floor(i / cols) * (tileH + gap);
  const top = window.scrollY + $("bar").offsetHeight;
  if (y < top) window.scrollTo(0, y - $("bar").offsetHeight - gap);
  else if (y + tileH > window.scrollY + window.innerHeight) window.scrollTo(0, y + tileH - window.innerHeight + gap);
  queueRender();
}

function targets() {
  if (desk.focus !== null && desk.selected.has(desk.focus)) return [...desk.selected];
  return desk.focus === null ? [] : [desk.focus];
}
desk.targets = targets;

// --- marks ----------------------------------------------------------------------------------

// Set marks on pictures; the page shows them at once, the desk's next batch confirms them.
async function setMarks(ids, fields) {
  if (!ids.length) return null;
  const answer = await post("/api/marks", { ids, set: fields });
  if (!answer) return null;
  for (const [id, marks] of Object.entries(answer.marks)) {
    const t = desk.tiles.get(id);
    if (t) t.marks = marks;
    const el = desk.elements.get(id);
    if (el) el._v = -1;
  }
  if (filtersActive()) rebuildOrder(); else { queueRender(); scheduleCounts(); }
  emit("marks", Object.keys(answer.marks));
  return answer;
}
desk.setMarks = setMarks;

function fillMarks(el, t) {
  const m = t.marks || {};
  const stars = el.querySelectorAll(".stars b");
  stars.forEach((b, k) => { b.textContent = k < (m.rating || 0) ? "★" : "☆"; b.classList.toggle("on", k < (m.rating || 0)); });
  const color = el.querySelector(".color");
  color.textContent = m.color ? desk.labels[m.color] || String(m.color) : "";
  color.hidden = !m.color;
  el.dataset.rating = m.rating ?? "";
  el.dataset.color = m.color ?? "";
  el.dataset.tagged = m.tagged ? "1" : "";
  if (m.color) el.classList.add("color-" + m.color);
  el.classList.toggle("tagged", Boolean(m.tagged));
  el.querySelector(".tag").textContent = m.tagged ? "Tagged" : "Tag";
  const caption = m.headline || m.caption;
  if (caption) el.querySelector(".thumb").title = caption; // a title is text, never markup
}

function marksLine(t) {
  const m = t.marks || {};
  const parts = [m.rating ? "★".repeat(m.rating) : "no stars"];
  if (m.color) parts.push(`${m.color} ${desk.labels[m.color] || ""}`);
  if (m.tagged) parts.push("tagged");
  return parts.join(" · ");
}

function toggleTag(ids) {
  const all = ids.every((id) => desk.tiles.get(id)?.marks?.tagged);
  return setMarks(ids, { tagged: !all });
}

function request(ids, smaller) {
  if (!ids.length) return;
  post("/api/request", smaller ? { ids, ...smallerChoice("1024") } : { ids });
}

function toggleKeep(ids) {
  const copies = ids.filter((id) => desk.tiles.get(id)?.smaller);
  if (!copies.length) {
    showToast("no smaller copy here to keep: type a long edge and press S (or Transfer) first");
    return;
  }
  keepCopies(copies, !copies.every((id) => desk.tiles.get(id).smaller.kept));
}

// --- the larger view: the thumbnail at once, the original as soon as it is here --------------

function openViewer(t) {
  if (!t) return;
  desk.viewing = t.id;
  setFocus(t.id);
  const thumb = $("viewer-thumb"), full = $("viewer-img");
  thumb.src = "/thumb/" + t.id;
  thumb.hidden = false;
  full.hidden = true;
  full.removeAttribute("src");
  full.dataset.id = "";
  showViewer(t);
  $("viewer").hidden = false;
}

function viewerState(t) {
  if (t.mark === "smaller") {
    const c = t.smaller;
    return `A ${copyText(c)} (${formatSize(c.size)}), not the original: R requests the original` +
      (c.kept ? "; this copy is kept once it is here" : "; K keeps this copy once it is here");
  }
  if (hasOriginal(t)) return t.smaller ? `The original; a ${copyText(t.smaller)} is kept too` : "";
  if (t.mark === "transferring") return markText(t) + " — the original shows when it is here";
  if (t.mark === "refused") return "Not necessary: R requests it after all";
  if (t.mark === "requested") return "Reserved for transfer" + (t.note ? ": it waits, " + t.note : "");
  if (t.mark === "held" && t.sealed) {
    return `Held here for ${t.held_for}, sealed: this desk has no key to open it; only ${t.held_for} can read it out`;
  }
  return "Only the thumbnail is here: R requests the original, S a smaller copy";
}

function showViewer(t) {
  const here = hasOriginal(t);
  $("viewer-name").textContent = `${t.name}${t.mark === "smaller" ? ` (${copyText(t.smaller)})` : ""} — ${cameraName(t.origin)}`;
  $("viewer-marks").textContent = marksLine(t);
  // Each field apart, isolated: a bidi override typed in one cannot turn the others around.
  $("viewer-caption").replaceChildren(...[t.marks?.headline, t.marks?.caption].filter(Boolean).map((text) => {
    const span = document.createElement("span");
    span.textContent = text;
    return span;
  }));
  $("viewer-state").textContent = viewerState(t);
  $("viewer-request").hidden = t.mark === "received" || t.mark === "local";
  $("viewer-keep").hidden = !t.smaller;
  $("viewer-keep").textContent = t.smaller && t.smaller.kept ? "Copy kept (K: let it go)" : "Keep copy (K)";
  $("viewer-download").hidden = !here;
  $("viewer-download").href = `/original/${t.id}?download=1`;
  const full = $("viewer-img");
  if (here && full.dataset.id !== t.id) {
    full.dataset.id = t.id;
    full.onload = () => { if (desk.viewing === t.id) { full.hidden = false; $("viewer-thumb").hidden = true; } };
    full.src = "/original/" + t.id;
  }
}

function closeViewer() {
  $("viewer").hidden = true;
  desk.viewing = null;
  $("viewer-img").removeAttribute("src");
  $("viewer-img").dataset.id = "";
}

desk.on("tiles", (tiles) => {
  if (desk.viewing && tiles.some((t) => t.id === desk.viewing)) showViewer(desk.tiles.get(desk.viewing));
});
desk.on("marks", (ids) => {
  if (desk.viewing && ids.includes(desk.viewing)) showViewer(desk.tiles.get(desk.viewing));
});
$("viewer-close").addEventListener("click", closeViewer);
$("viewer-request").addEventListener("click", () => request([desk.viewing], false));
$("viewer-keep").addEventListener("click", () => toggleKeep([desk.viewing]));

// --- the keys -------------------------------------------------------------------------------

function showKeys(show) {
  const list = $("keys-list");
  if (!list.childElementCount) {
    for (const [key, what] of KEYS) {
      const row = list.insertRow();
      row.insertCell().textContent = key;
      row.insertCell().textContent = what;
    }
  }
  $("keys").hidden = !show;
}
$("keys-close").addEventListener("click", () => showKeys(false));
$("keys-button").addEventListener("click", () => showKeys($("keys").hidden));

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") {
    if (typing(e.target)) { e.target.blur(); return; }
    if (!$("keys").hidden) showKeys(false); else closeViewer();
    return;
  }
  if (typing(e.target) || e.ctrlKey || e.metaKey) return;
  if ((e.key === "Enter" || e.key === " ") && e.target.closest && e.target.closest("button, a")) return;
  const digit = /^Digit([0-9])$/.exec(e.code);
  const n = digit ? parseInt(digit[1]) : null;
  const ids = targets();
  let handled = true;
  if (n !== null && (e.shiftKey || e.altKey)) {
    if (n <= 8) setMarks(ids, { color: n === 0 ? null : n });
  } else if (n !== null && n <= 5) {
    setMarks(ids, { rating: n });
  } else {
    switch (e.key) {
      case "ArrowLeft": moveFocus(-1); break;
      case "ArrowRight": moveFocus(1); break;
      case "ArrowUp": moveFocus($("viewer").hidden ? -geometry.cols : -1); break;
      case "ArrowDown": moveFocus($("viewer").hidden ? geometry.cols : 1); break;
      case "Home": moveFocus(-desk.order.length); break;
      case "End": moveFocus(desk.order.length); break;
      case "PageUp": case "PageDown": {
        const rows = Math.max(1, Math.floor(window.innerHeight / (geometry.tileH + geometry.gap)) - 1);
        moveFocus((e.key === "PageUp" ? -1 : 1) * rows * geometry.cols);
        break;
      }
      case "Enter": case " ":
        if (!$("viewer").hidden) closeViewer();
        else if (desk.focus !== null) openViewer(desk.tiles.get(desk.focus));
        else moveFocus(0);
        break;
      case "t": case "T": toggleTag(ids); break;
      case "r": case "R": request(ids, false); break;
      case "s": case "S": request(ids, true); break;
      case "k": case "K": toggleKeep(ids); break;
      case "n": case "N": if (ids.length) post("/api/refuse", { ids }); break;
      case "x": case "X": if (desk.focus !== null) toggle(desk.focus); break;
      case "c": case "C": if (desk.focus !== null) { closeViewer(); $("p-caption").focus(); } break;
      case "?": showKeys($("keys").hidden); break;
      default: handled = false;
    }
  }
  if (handled) e.preventDefault();
});
