// The delivery queue panel (issue 19): what goes to the agency's server, how far each upload
// is, and the server's or the network's reason when it refused; and the Export button
// (`cammesh desk --export-to DIR`). Polls /api/deliveries and /api/export; every text from
// the server (file names, reasons) is set as text, never as HTML.
"use strict";
(() => {
  const POLL_MS = 1500;
  const panel = document.createElement("aside");
  panel.id = "delivery";
  panel.hidden = true;
  panel.setAttribute("aria-label", "delivery to the agency");
  panel.innerHTML = `
    <h2><button class="toggle" aria-expanded="true" title="show or hide the queue">Delivery</button>
      <span class="target"></span></h2>
    <p class="summary"></p>
    <p class="problem" role="alert" hidden></p>
    <ol class="queue"></ol>
    <div class="export" hidden>
      <button class="export-go" title="write the selects, with XMP sidecars, to the export folder">Export tagged</button>
      <label><input type="checkbox" class="export-all"> every picture</label>
      <span class="export-state" role="status"></span>
      <ul class="export-skipped"></ul>
    </div>`;
  const $ = (sel) => panel.querySelector(sel);

  function size(n) {
    if (n == null) return "";
    return n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} kB`;
  }

  function row(entry) {
    const li = document.createElement("li");
    li.className = `delivery-${entry.state}`;
    li.dataset.id = entry.image_id;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = entry.name;
    const state = document.createElement("span");
    state.className = "state";
    let text = entry.state;
    if (entry.state === "uploading" || (entry.state === "sending" && entry.size)) {
      text = `${entry.state} ${Math.floor((100 * entry.sent) / (entry.size || 1))}% of ${size(entry.size)}`;
    }
    if (entry.retry_in != null) text += ` · retry in ${Math.ceil(entry.retry_in)} s (attempt ${entry.attempts + 1})`;
    state.textContent = text;
    li.append(name, state);
    if (entry.error && entry.state !== "delivered") {
      const why = document.createElement("span");
      why.className = "why";
      why.textContent = entry.error;
      li.append(why);
    }
    return li;
  }

  let delivering = false, exporting = false;

  function reveal() { panel.hidden = !(delivering || exporting); }

  function showExport(status) {
    window.deskExport = status;
    exporting = true;
    const box = $(".export");
    box.hidden = false;
    $(".export-go").disabled = status.running;
    let text = `to ${status.folder}`;
    if (status.running) text = `exporting ${status.done} of ${status.total || "…"} to ${status.folder}`;
    else if (status.total) text = `exported ${status.written} of ${status.total} to ${status.folder}`;
    if (status.error) text += ` · ${status.error}`;
    $(".export-state").textContent = text;
    $(".export-skipped").replaceChildren(...status.skipped.map((item) => {
      const li = document.createElement("li");
      li.textContent = `${item.name}: ${item.reason}`;
      return li;
    }));
    reveal();
  }

  async function startExport() {
    const every = $(".export-all").checked;
    const answer = await fetch("/api/export", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ tagged: !every }),
    });
    const status = await answer.json();
    if (answer.ok) showExport(status);
    else $(".export-state").textContent = status.error || `export refused (${answer.status})`;
    pollExport();
  }

  async function pollExport() {
    try {
      const answer = await fetch("/api/export", { cache: "no-store" });
      if (answer.ok) {
        const status = await answer.json();
        showExport(status);
        if (status.running) setTimeout(pollExport, 500);
      }
    } catch (_) { /* the desk restarts */ }
  }

  function show(status) {
    window.deskDelivery = status;
    delivering = Boolean(status.target);
    $(".target").parentElement.hidden = !delivering;
    $(".summary").hidden = !delivering;
    reveal();
    if (!delivering) return;
    $(".target").textContent = status.target;
    $(".summary").textContent =
      `${status.queued} waiting, ${status.delivered} delivered · ${status.rule} · ${status.copy}`;
    const problem = $(".problem");
    problem.hidden = !status.error;
    problem.textContent = status.error ? `The server refused or is away: ${status.error}` : "";
    $(".queue").replaceChildren(...status.entries.map(row));
  }

  async function poll() {
    try {
      const answer = await fetch("/api/deliveries", { cache: "no-store" });
      if (answer.ok) show(await answer.json());
      else if (answer.status === 404) { show({ target: null }); return; }  // no --deliver
    } catch (_) { /* the desk restarts: ask again shortly */ }
    setTimeout(poll, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.body.append(panel);
    $(".toggle").addEventListener("click", () => {
      const open = panel.classList.toggle("folded") === false;
      $(".toggle").setAttribute("aria-expanded", String(open));
    });
    $(".export-go").addEventListener("click", startExport);
    poll();
    pollExport();
  });
})();
