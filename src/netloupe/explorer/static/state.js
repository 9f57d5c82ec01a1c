// What the page shows now, and the URL hash that keeps it.
import { $ } from "./api.js";

export const S = {
  info: null,
  rows: new Map(),     // layer name -> row of /api/info "layers"
  input: null,
  names: new Map(),    // input -> what to call it (an upload's file name)
  layer: null,
  row: null,
  channel: null,
  grid: null,          // X-Netloupe-Grid of the grid shown
  scanned: new Set(),
  predictions: [],
  multi: false,        // some layer runs several times (a siamese model): inputs may have two parts
  tree: null,
};
export const BACKPROP_CAPTIONS = {
  saliency: "gradient",
  guided_backprop: "guided backprop",
  deconvnet: "deconvnet",
  grad_cam: "Grad-CAM at the layer's input",
};

export function readHash() {
  return Object.fromEntries(new URLSearchParams(location.hash.slice(1)));
}
export function writeHash() {
  const p = new URLSearchParams();
  if (S.input && !S.input.startsWith("upload:")) p.set("input", S.input);
  if (S.layer) p.set("layer", S.layer);
  if (S.channel != null) p.set("channel", S.channel);
  if ($("cmap").value !== "viridis") p.set("cmap", $("cmap").value);
  if ($("norm").value !== "channel") p.set("norm", $("norm").value);
  history.replaceState(null, "", `#${p}`);
}
