// netloupe explorer: the page over the explorer's routes (app.py), as plain ES modules (no build step).
import { $, getJSON, setStatus } from "./api.js";
import { browseData, buildSamples, cam, setInput, startWebcam, stopWebcam, uploadFile } from "./input.js";
import { buildTree, defaultLayer, filterTree, fitGrid, loadGrid, selectLayer, tileAt } from "./layers.js";
import { buildDropoutSelect, buildMethods, dropout, explain } from "./panels.js";
import { S, readHash, writeHash } from "./state.js";
import { loadUnitInputViews, selectChannel, startRender } from "./unit.js";

function bind() {
  $("upload").addEventListener("change", (e) => { uploadFile(e.target.files[0]).then(() => { e.target.value = ""; }); });
  $("webcam-toggle").addEventListener("click", () => (cam.stream ? stopWebcam() : startWebcam()));
  $("data-open").addEventListener("click", () => browseData());
  $("data-close").addEventListener("click", () => $("data-dialog").close());
  $("data-prev").addEventListener("click", () => browseData(-1));
  $("data-next").addEventListener("click", () => browseData(1));
  $("layer-filter").addEventListener("input", (e) => filterTree(e.target.value));
  $("layer-filter").addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    const first = [...document.querySelectorAll(".layer-btn")].find((b) => b.offsetParent !== null);
    if (first) selectLayer(first.dataset.layer);
  });
  for (const id of ["cmap", "norm"]) $(id).addEventListener("change", () => { writeHash(); loadGrid(); loadUnitInputViews(); });
  $("render-again").addEventListener("click", () => startRender(S.layer, S.channel, { again: true }));
  $("patch-close").addEventListener("click", () => $("patch-dialog").close());
  $("zoom").addEventListener("change", fitGrid);
  window.addEventListener("resize", fitGrid);
  const img = $("grid-img");
  img.addEventListener("click", (e) => { const c = tileAt(e); if (c != null) { selectChannel(c); $("grid-wrap").focus({ preventScroll: true }); } });
  img.addEventListener("mousemove", (e) => { const c = tileAt(e); $("grid-hover").textContent = c == null ? "" : `channel ${c}`; });
  img.addEventListener("mouseleave", () => { $("grid-hover").textContent = ""; });
  document.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey || !S.grid) return;
    if (e.target.closest && e.target.closest("input, select, textarea, dialog")) return;
    const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -S.grid.cols, ArrowDown: S.grid.cols }[e.key];
    if (step == null) return;
    e.preventDefault();
    const c = S.channel == null ? 0 : S.channel + step;
    if (c >= 0 && c < S.grid.channels) selectChannel(c);
  });
  $("class-form").addEventListener("submit", (e) => { e.preventDefault(); explain(); });
  $("dropout-form").addEventListener("submit", (e) => { e.preventDefault(); dropout(); });
}

async function init() {
  bind();
  try {
    S.info = await getJSON("/api/info");
  } catch (e) {
    setStatus(`could not reach the explorer: ${e.message}`, true);
    return;
  }
  $("model-name").textContent = S.info.model;
  document.title = `netloupe explorer · ${S.info.model}`;
  for (const row of S.info.layers) S.rows.set(row.name, row);
  S.scanned = new Set(S.info.scanned);
  S.multi = S.info.layers.some((r) => r.name.includes("#"));
  $("data-group").hidden = !S.info.data;
  buildSamples();
  buildTree();
  buildDropoutSelect();
  buildMethods();
  const saved = readHash();
  if (["viridis", "inferno", "gray", "RdBu_r"].includes(saved.cmap)) $("cmap").value = saved.cmap;
  if (["channel", "layer"].includes(saved.norm)) $("norm").value = saved.norm;
  selectLayer(S.rows.has(saved.layer) ? saved.layer : defaultLayer(), { load: false });
  const start = saved.input && /^(sample|data):/.test(saved.input) ? saved.input : S.info.start;
  await setInput(start);
  if (saved.channel != null && /^\d+$/.test(saved.channel)) selectChannel(Number(saved.channel));
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", init);
