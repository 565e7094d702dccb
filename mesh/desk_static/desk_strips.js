// A movie's tile shows its strip of keyframe thumbnails (FIG. 15A) under the poster, with its
// duration; once its bytes arrive, each frame whose part of the file is in gets its mark, in
// order (FIG. 15B). The server says how many are in (tile.strip.in, mesh/desk_strips.py).
"use strict";

desk.stripLog = []; // [ms, id, frames marked]: every change of a movie's marks the page showed
const stripShown = new Map(); // id -> frames marked, as last logged

function formatDuration(s) {
  if (typeof s !== "number") return "";
  const m = Math.floor(s / 60), r = Math.round(s % 60);
  return `${m}:${String(r).padStart(2, "0")}`;
}

window.fillStrip = (el, t) => {
  let strip = el.querySelector(".strip");
  if (!t.strip) { if (strip) strip.remove(); return; }
  if (!strip || strip.children.length !== t.strip.times.length) {
    if (strip) strip.remove();
    strip = document.createElement("div");
    strip.className = "strip";
    t.strip.times.forEach((time, k) => {
      const img = document.createElement("img");
      img.loading = "lazy";
      img.alt = "";
      img.src = `/strip/${t.id}/${k}`;
      img.title = `${formatDuration(time)} (${t.strip.kinds[k]})`;
      img.dataset.k = k;
      strip.appendChild(img);
    });
    const length = document.createElement("span");
    length.className = "duration";
    strip.appendChild(length);
    el.querySelector(".thumb").appendChild(strip);
  }
  strip.querySelector(".duration").textContent = formatDuration(t.meta.duration ?? t.strip.times.at(-1));
  strip.querySelectorAll("img").forEach((img, k) => img.classList.toggle("in", k < t.strip.in));
  el.dataset.stripIn = t.strip.in;
};

desk.on("tiles", (tiles) => {
  for (const t of tiles) {
    if (!t.strip || stripShown.get(t.id) === t.strip.in) continue;
    stripShown.set(t.id, t.strip.in);
    desk.stripLog.push([Math.round(performance.now()), t.id, t.strip.in]);
  }
});
