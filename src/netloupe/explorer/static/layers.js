// The layers: the tree, and the chosen layer's grid of channel maps.
import { $, h, shapeText, showImage, url } from "./api.js";
import { describe } from "./input.js";
import { S, writeHash } from "./state.js";
import { selectChannel, showLayerScan } from "./unit.js";

export function buildTree() {
  const root = { path: "", children: new Map() };
  for (const row of S.info.layers) {
    let node = root;
    const parts = row.name.split(".");
    parts.forEach((part, i) => {
      if (!node.children.has(part)) {
        node.children.set(part, { label: part, path: parts.slice(0, i + 1).join("."), children: new Map(), row: null, parent: node });
      }
      node = node.children.get(part);
    });
    node.row = row;
  }
  S.tree = root;
  const render = (node) => {
    const li = h("li");
    const label = node.row
      ? h("button", { type: "button", class: "layer-btn", "data-layer": node.row.name, title: `${node.row.name} · ${shapeText(node.row)}`,
        onclick: (e) => { e.preventDefault(); selectLayer(node.row.name); } },
      h("span", { class: "layer-label", text: node.label }), h("span", { class: "shape", text: shapeText(node.row) }))
      : h("span", { class: "layer-group", text: node.label });
    if (node.children.size) {
      node.details = h("details", {}, h("summary", {}, label), h("ul", {}, [...node.children.values()].map(render)));
      li.append(node.details);
    } else {
      li.append(label);
    }
    node.li = li;
    return li;
  };
  $("layer-tree").replaceChildren(h("ul", { class: "tree-root" }, [...root.children.values()].map(render)));
  $("layers-count").textContent = `${S.info.layers.length}`;
  markScanned();
}

export function treeNode(name) {
  let node = S.tree;
  for (const part of name.split(".")) {
    node = node && node.children.get(part);
  }
  return node;
}

export function openPathTo(name) {
  for (let node = treeNode(name); node; node = node.parent) if (node.details && node.path !== name) node.details.open = true;
}

export function filterTree(query) {
  const q = query.trim().toLowerCase();
  let matches = 0;
  const walk = (node) => {
    let visible = false;
    for (const child of node.children.values()) visible = walk(child) || visible;
    const self = !q || node.path.toLowerCase().includes(q);
    if (self && node.row && q) matches += 1;
    if (node.details && q) node.details.open = visible;
    if (node.li) node.li.hidden = !(self || visible);
    return self || visible;
  };
  walk(S.tree);
  if (!q) {
    const close = (node) => { if (node.details) node.details.open = false; node.children.forEach(close); };
    close(S.tree);
    if (S.layer) openPathTo(S.layer);
  }
  $("layers-count").textContent = q ? `${matches} of ${S.info.layers.length}` : `${S.info.layers.length}`;
}

export function markScanned() {
  for (const b of document.querySelectorAll(".layer-btn")) b.classList.toggle("scanned", S.scanned.has(b.dataset.layer));
}

export function defaultLayer() {
  // a middle layer with a spatial grid and not too many channels: a readable first view
  const rows = S.info.layers;
  const fits = rows.map((r, i) => [r, i]).filter(([r]) => r.grid.length === 2 && r.grid[0] >= 7 && r.channels <= 256);
  if (!fits.length) return rows[0].name;
  const aim = 0.6 * rows.length;
  fits.sort((a, b) => Math.abs(a[1] - aim) - Math.abs(b[1] - aim));
  return fits[0][0].name;
}

export function selectLayer(name, { load = true } = {}) {
  const row = S.rows.get(name);
  if (!row) return Promise.resolve();
  S.layer = name;
  S.row = row;
  S.grid = null;
  for (const b of document.querySelectorAll(".layer-btn.current")) { b.classList.remove("current"); b.removeAttribute("aria-current"); }
  const button = document.querySelector(`.layer-btn[data-layer="${CSS.escape(name)}"]`);
  if (button) { button.classList.add("current"); button.setAttribute("aria-current", "true"); }
  openPathTo(name);
  if (button) button.scrollIntoView({ block: "nearest" });
  $("layer-name").textContent = name;
  $("layer-shape").textContent = `${shapeText(row)} · ${row.channels} channels · ${row.layout}`;
  selectChannel(null);
  writeHash();
  showLayerScan(name);
  return load ? loadGrid() : Promise.resolve();
}

// -- the layer grid -------------------------------------------------------------------------
export async function loadGrid() {
  if (!S.layer || !S.input) return;
  const img = $("grid-img");
  const ref = S.input;
  const layer = S.layer;
  const res = await showImage(img, url("/api/layer.png", { input: ref, layer, cmap: $("cmap").value, norm: $("norm").value }), $("grid-err"));
  if (!res || layer !== S.layer) return;
  S.grid = JSON.parse(res.headers.get("X-Netloupe-Grid"));
  img.alt = `the ${S.grid.channels} channel maps of ${layer} on ${describe(ref)}`;
  img.dataset.input = ref;
  img.dataset.layer = layer;
  fitGrid();
}

export function fitGrid() {
  const img = $("grid-img");
  const wrap = $("grid-wrap");
  if (!img.naturalWidth) return;
  const w = img.naturalWidth;
  const hgt = img.naturalHeight;
  let scale = Number($("zoom").value);
  if (!scale) {
    const room = Math.max(320, window.innerHeight - 190);
    const pad = parseFloat(getComputedStyle(wrap).paddingLeft) + parseFloat(getComputedStyle(wrap).paddingRight);
    scale = Math.min((wrap.clientWidth - pad) / w, room / hgt);
  }
  img.style.width = `${Math.floor(w * scale)}px`;
  img.style.height = `${Math.floor(hgt * scale)}px`;
  img.classList.toggle("smooth", scale < 1);  // nearest-neighbour only when scaling up
  markTile();
}

export function tileAt(ev) {
  const g = S.grid;
  const img = $("grid-img");
  if (!g || !img.naturalWidth) return null;
  const r = img.getBoundingClientRect();
  const x = (ev.clientX - r.left) * img.naturalWidth / r.width;
  const y = (ev.clientY - r.top) * img.naturalHeight / r.height;
  const [th, tw] = g.tile;
  const col = Math.floor((x - g.pad) / (tw + g.pad));
  const row = Math.floor((y - g.pad) / (th + g.pad));
  if (col < 0 || col >= g.cols || row < 0) return null;
  const c = row * g.cols + col;
  return c < g.channels ? c : null;
}

export function markTile() {
  const mark = $("tile-mark");
  const g = S.grid;
  const img = $("grid-img");
  if (!g || S.channel == null || S.channel >= g.channels || !img.naturalWidth) { mark.hidden = true; return; }
  const s = img.clientWidth / img.naturalWidth;
  const [th, tw] = g.tile;
  const row = Math.floor(S.channel / g.cols);
  const col = S.channel % g.cols;
  mark.style.left = `${(g.pad + col * (tw + g.pad)) * s}px`;
  mark.style.top = `${(g.pad + row * (th + g.pad)) * s}px`;
  mark.style.width = `${tw * s}px`;
  mark.style.height = `${th * s}px`;
  mark.hidden = false;
}
