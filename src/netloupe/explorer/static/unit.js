// One unit: its panel, its scan and render started by themselves.
import { $, fmt, getJSON, h, postJSON, showImage, url } from "./api.js";
import { clearSlot, followJob, runJob, track } from "./jobs.js";
import { markScanned, markTile } from "./layers.js";
import { BACKPROP_CAPTIONS, S, writeHash } from "./state.js";

// Choosing a unit clears its panel at once (nothing of the last unit stays under the new name),
// then, once the choice rests a moment, asks for its views; answers for a unit no longer chosen
// are dropped. With --data, the shown layer is scanned and the chosen unit rendered without a
// click (each with its progress); the buttons run them again.
let unitTimer = null;
export const unitKey = () => `${S.layer}:${S.channel}`;

export function selectChannel(c) {
  if (c != null && (!S.row || c < 0 || c >= S.row.channels)) return;
  S.channel = c;
  markTile();
  writeHash();
  clearTimeout(unitTimer);
  $("unit-empty").hidden = c != null;
  $("unit-body").hidden = c == null;
  $("unit-name").textContent = c == null ? "" : `${S.layer}:${c}`;
  if (c == null) return;
  document.body.dataset.unit = unitKey();
  clearUnitPanel();
  // arrow keys held down move fast: ask the server only once the selection rests a moment
  unitTimer = setTimeout(() => { loadUnitInfo(); loadUnitInputViews(); }, 120);
}

export function clearUnitPanel() {
  const body = $("unit-body");
  body.dataset.unit = "";  // set again once this unit's statistics have arrived
  $("unit-stats").textContent = "loading…";
  $("unit-stats").classList.remove("dead");
  $("unit-corr").replaceChildren();
  for (const img of body.querySelectorAll("img.unit-view")) img.classList.add("stale");
  clearSlot($("render-slot"));
  clearSlot($("patches-slot"));
  clearSlot($("hist-slot"));
  $("render-again").hidden = true;
}

export function backpropImages() {
  const box = $("backprops");
  if (!box.childElementCount) {
    for (const m of S.info.backprop) {
      const caption = BACKPROP_CAPTIONS[m] || m.replace(/_/g, " ");
      box.append(h("figure", { class: "bp" },
        h("img", { class: "bp-img unit-view", "data-method": m, alt: `${caption} of the unit on the input`, hidden: true }),
        h("figcaption", { text: caption }),
        h("p", { class: "err", hidden: true })));
    }
  }
  return [...box.querySelectorAll("figure")];
}

// the unit's views that depend on the input: its map over the input, enlarged, and its backprop maps
export function loadUnitInputViews() {
  if (S.channel == null) return Promise.resolve();
  const p = { input: S.input, layer: S.layer, channel: S.channel };
  const ref = S.input;
  const key = unitKey();
  const shown = (img) => (res) => {
    if (res && key === unitKey()) { img.dataset.input = ref; img.dataset.unit = key; img.classList.remove("stale"); }
  };
  const views = [
    showImage($("unit-map"), url("/api/unit/map.png", p), $("unit-map-err")).then(shown($("unit-map"))),
    showImage($("unit-channel"), url("/api/unit/channel.png", { ...p, cmap: $("cmap").value }), $("unit-channel-err"))
      .then(shown($("unit-channel"))),
  ];
  for (const fig of backpropImages()) {
    const img = fig.querySelector("img");
    views.push(showImage(img, url("/api/unit/backprop.png", { ...p, method: img.dataset.method }), fig.querySelector(".err"))
      .then(shown(img)));
  }
  return Promise.all(views);
}

let unitSeq = 0;
export async function loadUnitInfo() {
  const n = ++unitSeq;
  const layer = S.layer;
  const channel = S.channel;
  const same = () => n === unitSeq && layer === S.layer && channel === S.channel;
  let info;
  try {
    info = await getJSON(url("/api/unit", { layer, channel }));
  } catch (e) {
    if (same()) $("unit-stats").textContent = e.message;
    return;
  }
  if (!same()) return;  // a late answer for a unit no longer chosen
  $("unit-body").dataset.unit = `${layer}:${channel}`;
  $("unit-stats").textContent = info.scanned
    ? `over ${info.images} images: mean ${fmt(info.mean)} · max ${fmt(info.max)}${info.dead ? " · dead (never fires)" : ""}`
    : info.data ? "The layer is being scanned on the data…" : "No data to scan: start the explorer with --data DIR.";
  $("unit-stats").classList.toggle("dead", !!info.dead);
  const corr = $("unit-corr");
  if (info.correlated && info.correlated.length) {
    corr.replaceChildren(...info.correlated.map((c) => h("button", { type: "button", class: "chip", title: `go to ${layer}:${c.channel}`,
      onclick: () => selectChannel(c.channel) }, `${c.channel}`, h("span", { class: "r", text: ` r ${c.r.toFixed(2)}` }))));
  } else {
    corr.replaceChildren(h("p", { class: "sub", text: info.scanned ? "none" : "known once the layer is scanned" }));
  }
  showScanned(info, layer, channel);
  startRender(layer, channel, { auto: true });
}

export function startRender(layer, channel, { auto = false, again = false } = {}) {
  const again_ = $("render-again");
  again_.hidden = true;
  runJob($("render-slot"), url("/api/render", { layer, channel, auto: auto || null, again: again || null }),
    { title: "render", picture: `the feature visualization of ${layer}:${channel}` }).then((final) => {
    if (final && layer === S.layer && channel === S.channel) again_.hidden = false;
  });
}

export async function showScanned(info, layer, channel) {
  const patches = $("patches-slot");
  const hist = $("hist-slot");
  if (!info.scanned) {
    clearSlot(patches, h("p", { class: "sub", text: info.data ? "shown once the layer's scan (above the grid) is done"
      : "No data to scan: start the explorer with --data DIR." }));
    clearSlot(hist, h("p", { class: "sub", text: info.data ? "shown once the layer is scanned" : "–" }));
    if (info.data) startScan(layer, { auto: true });
    return;
  }
  const himg = h("img", { class: "hist", alt: `the histogram of ${layer}:${channel}'s per-image maxima`, hidden: true });
  const herr = h("p", { class: "err", hidden: true });
  clearSlot(hist, himg, herr);
  showImage(himg, url("/api/unit/histogram.png", { layer, channel }), herr);
  let listed;
  try {
    listed = await getJSON(url("/api/unit/patches", { layer, channel }));
  } catch (e) {
    if (layer === S.layer && channel === S.channel) clearSlot(patches, h("p", { class: "err", text: e.message }));
    return;
  }
  if (layer !== S.layer || channel !== S.channel) return;
  const figures = listed.patches.map((p, i) => {
    const caption = `${p.image} · ${fmt(p.value)}`;
    const img = h("img", { class: "patch", alt: `patch ${i + 1}: ${caption}`, hidden: true });
    const fig = h("figure", { class: "patch-fig", "data-index": String(i) },
      h("button", { type: "button", class: "patch-open", title: `${caption} (click to enlarge)`,
        onclick: () => enlargePatch(layer, channel, i, caption) }, img),
      h("figcaption", { text: caption }));
    showImage(img, url("/api/unit/patch.png", { layer, channel, index: i, size: 160 }));
    return fig;
  });
  clearSlot(patches, h("div", { class: "patch-grid", id: "patch-grid", "data-unit": `${layer}:${channel}` }, figures));
}

export function enlargePatch(layer, channel, index, caption) {
  const dialog = $("patch-dialog");
  $("patch-caption").textContent = `${layer}:${channel} · top ${index + 1} · ${caption}`;
  const big = $("patch-big");
  big.hidden = true;
  showImage(big, url("/api/unit/patch.png", { layer, channel, index, size: 480 }));
  dialog.showModal();
}

// a layer's scan: started for the shown layer by itself; its progress shows above the grid
export const scans = new Map();  // layer -> { status: the job's, once started; done: a promise of its final status }
export function startScan(layer, { auto = false, again = false } = {}) {
  if (!S.info.data) return null;
  const running = scans.get(layer);
  if (running && !again) {
    if (layer === S.layer && running.status) followScan(layer, running);
    return running.done;
  }
  const entry = { status: null, done: null };
  entry.done = postJSON(url("/api/scan", { layer, auto: auto || null, again: again || null })).then((status) => {
    entry.status = status;
    if (layer === S.layer) followScan(layer, entry);
    return track(status).done;
  }).catch((e) => ({ state: "failed", error: e.message })).then((final) => {
    if (scans.get(layer) === entry) scans.delete(layer);
    if (final.state === "done") {
      S.scanned.add(layer);
      markScanned();
      if (layer === S.layer) {
        showLayerScan(layer);
        if (S.channel != null) loadUnitInfo();
      }
    } else if (layer === S.layer && final.state === "failed") {
      clearSlot($("layer-scan"), h("p", { class: "err", text: final.error || "the scan failed" }));
    }
    return final;
  });
  scans.set(layer, entry);
  return entry.done;
}

export function followScan(layer, entry) {
  followJob($("layer-scan"), entry.status, { title: `scan of ${layer} on the data` });
}

// the scan line above the grid for the layer shown: scanned (and a button to scan again), its
// scan's progress, or a scan started now
export function showLayerScan(layer) {
  const slot = $("layer-scan");
  if (!S.info.data) return;
  if (S.scanned.has(layer) && !scans.has(layer)) {
    clearSlot(slot, h("span", { class: "sub", text: `${layer} is scanned on the data` }),
      h("button", { type: "button", id: "scan-again", onclick: () => startScan(layer, { again: true }) }, "Scan again"));
    return;
  }
  clearSlot(slot, h("span", { class: "sub", text: `scan of ${layer}: starting…` }));
  startScan(layer, { auto: true });
}
