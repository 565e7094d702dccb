// The focused picture's panel (issue 19): stars, colour class, tag, and the caption fields
// (caption, headline, credit, keywords), a template for one camera's pictures, the colour
// classes' labels, and Photo Mechanic's code replacements (`\code\` expanded as it is typed).
// Every text here is the users': it is set as text or as a field's value, never as HTML.
"use strict";

const CAPTION_INPUTS = { "p-caption": "caption", "p-headline": "headline", "p-credit": "credit", "p-keywords": "keywords" };

function keywordsOf(text) { return text.split(/[,;]/).map((w) => w.trim()).filter(Boolean); }

function captionValues() {
  const out = {};
  for (const [id, field] of Object.entries(CAPTION_INPUTS)) {
    const v = $(id).value;
    out[field] = field === "keywords" ? keywordsOf(v) : v;
  }
  return out;
}

// The panel follows the focus (and the focused picture's marks), unless the editor is typing.
function showPanel() {
  const t = desk.focus === null ? null : desk.tiles.get(desk.focus);
  $("panel").classList.toggle("empty", !t);
  $("p-name").textContent = t ? `${t.name} — ${cameraName(t.origin)}` : "No picture focused: click one, or press an arrow key";
  $("p-thumb").hidden = !t;
  if (!t) return;
  if ($("p-thumb").dataset.id !== t.id) { $("p-thumb").src = "/thumb/" + t.id; $("p-thumb").dataset.id = t.id; }
  const m = t.marks || {};
  for (const b of $("p-stars").querySelectorAll("button")) b.classList.toggle("on", parseInt(b.dataset.n) <= (m.rating || 0) && b.dataset.n !== "0");
  if (document.activeElement !== $("p-color")) $("p-color").value = m.color == null ? "" : String(m.color);
  $("p-tagged").checked = Boolean(m.tagged);
  const editing = Object.keys(CAPTION_INPUTS).includes(document.activeElement && document.activeElement.id);
  if (!editing || $("panel").dataset.id !== t.id) {
    $("p-caption").value = m.caption || "";
    $("p-headline").value = m.headline || "";
    $("p-credit").value = m.credit || "";
    $("p-keywords").value = (m.keywords || []).join(", ");
  }
  $("panel").dataset.id = t.id;
}

desk.on("focus", showPanel);
desk.on("marks", (ids) => { if (ids.includes(desk.focus)) showPanel(); });
desk.on("tiles", (tiles) => { if (tiles.some((t) => t.id === desk.focus)) showPanel(); });

for (let n = 0; n <= 5; n++) {
  const b = document.createElement("button");
  b.dataset.n = String(n);
  b.textContent = n ? "★" : "0";
  b.title = n ? `${n} star${n > 1 ? "s" : ""} (${n})` : "no stars (0)";
  b.addEventListener("click", () => setMarks(targets(), { rating: n }));
  $("p-stars").appendChild(b);
}
$("p-color").addEventListener("change", (e) => setMarks(targets(), { color: e.target.value ? parseInt(e.target.value) : null }));
$("p-tagged").addEventListener("change", (e) => setMarks(targets(), { tagged: e.target.checked }));

// A field is saved when the editor leaves it (or presses Ctrl+Enter); its picture is the one
// the panel showed while it was typed.
for (const [id, field] of Object.entries(CAPTION_INPUTS)) {
  const input = $(id);
  input.addEventListener("change", () => {
    const image = $("panel").dataset.id;
    if (!image) return;
    const ids = desk.selected.has(image) ? [...desk.selected] : [image];
    setMarks(ids, { [field]: field === "keywords" ? keywordsOf(input.value) : input.value });
  });
  input.addEventListener("input", () => expandCodes(input));
  input.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) input.blur(); });
}

$("p-template").addEventListener("click", async () => {
  const t = desk.tiles.get($("panel").dataset.id);
  if (!t) return;
  const fields = captionValues();
  const set = {};
  for (const [k, v] of Object.entries(fields)) if (v.length) set[k] = v;
  if (!Object.keys(set).length) { showToast("type a caption, headline, credit or keywords first"); return; }
  const answer = await post("/api/template", { origin: t.origin, set, only_empty: $("p-only-empty").checked,
                                              keep: $("p-keep").checked });
  if (answer) showToast(`applied to ${answer.pictures} pictures of ${cameraName(t.origin)}`);
});

// --- Photo Mechanic code replacements -----------------------------------------------------------

// `\code\` just typed (the cursor after its closing backslash) becomes its text.
function expandCodes(input) {
  const at = input.selectionStart;
  if (at === null || input.value[at - 1] !== "\\") return;
  const before = input.value.slice(0, at);
  const match = /\\([^\\\s]+)\\$/.exec(before);
  if (!match || !Object.prototype.hasOwnProperty.call(desk.codes, match[1])) return;
  const text = desk.codes[match[1]];
  input.value = before.slice(0, match.index) + text + input.value.slice(at);
  const cursor = match.index + text.length;
  input.setSelectionRange(cursor, cursor);
}

async function loadCodes() {
  try {
    const answer = await (await fetch("/api/codes")).json();
    desk.codes = answer.codes || {};
    $("codes-count").textContent = `${Object.keys(desk.codes).length} codes${answer.source ? " from " + answer.source : ""}`;
  } catch (err) { /* the desk is restarting */ }
}

$("codes-file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  const answer = await post("/api/codes", { text: await file.text(), source: file.name });
  if (answer) await loadCodes();
});

// --- colour-class labels ------------------------------------------------------------------------

function showLabels(labels) {
  desk.labels = labels;
  const select = $("p-color");
  const current = select.value;
  select.replaceChildren(new Option("No colour", ""));
  for (let n = 1; n <= 8; n++) select.add(new Option(`${n} ${labels[n] || ""}`, String(n)));
  select.value = current;
  const list = $("labels");
  if (!list.childElementCount) {
    for (let n = 1; n <= 8; n++) {
      const row = document.createElement("label");
      row.className = "color-" + n;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.textContent = String(n);
      const input = document.createElement("input");
      input.id = "label-" + n;
      input.addEventListener("change", async () => {
        const answer = await post("/api/labels", { class: n, label: input.value });
        if (answer) showLabels(answer.labels); else input.value = desk.labels[n];
      });
      row.append(swatch, input);
      list.appendChild(row);
    }
  }
  for (let n = 1; n <= 8; n++) {
    const input = $("label-" + n);
    if (document.activeElement !== input) input.value = labels[n] || "";
  }
  for (const el of desk.elements.values()) el._v = -1;
  queueRender();
  scheduleCounts();
  showPanel();
}

showPanel();
loadCodes();
