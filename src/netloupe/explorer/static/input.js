// The input: samples, the data browser, uploads and the webcam, and the views of the input.
import { $, getJSON, h, postJSON, setStatus, showImage, sleep, url } from "./api.js";
import { loadGrid } from "./layers.js";
import { markStale } from "./panels.js";
import { S, writeHash } from "./state.js";
import { loadUnitInputViews } from "./unit.js";

export const describe = (ref) => S.names.get(ref) || ref;

export function setInput(ref, name) {
  S.input = ref;
  if (name) S.names.set(ref, name);
  document.body.dataset.input = ref;
  $("input-name").textContent = describe(ref);
  for (const b of document.querySelectorAll("#samples button")) b.setAttribute("aria-pressed", String(b.dataset.input === ref));
  writeHash();
  markStale();
  return refreshInputViews();
}

// every fast view of the current input; resolves when all of them have arrived
export function refreshInputViews() {
  const ref = S.input;
  const views = [loadPictures(ref), loadPredictions(ref), loadGrid()];
  if (S.channel != null) views.push(loadUnitInputViews());
  return Promise.all(views);
}

export async function loadPictures(ref) {
  const err = $("input-err");
  const views = [showImage($("input-img-0"), url("/api/input.png", { input: ref }), err)];
  const second = $("input-img-1");
  if (S.multi) {
    views.push(showImage(second, url("/api/input.png", { input: ref, part: 1 })).then((res) => {
      if (!res) second.hidden = true;  // this input has one part
    }));
  }
  await Promise.all(views);
  $("input-pictures").classList.toggle("two", !second.hidden);
  $("input-img-0").dataset.input = ref;
}

let predSeq = 0;
export async function loadPredictions(ref) {
  const n = ++predSeq;
  const list = $("preds");
  try {
    const r = await getJSON(url("/api/predict", { input: ref }));
    if (n !== predSeq) return;
    S.predictions = r.predictions;
    list.replaceChildren(...r.predictions.map((p) => h("li", { title: `class ${p.class}` },
      h("span", { class: "pred-label", text: p.label }),
      h("span", { class: "pred-bar", "aria-hidden": "true" }, h("i", { style: `width:${(100 * p.probability).toFixed(1)}%` })),
      h("span", { class: "pred-p", text: `${(100 * p.probability).toFixed(1)}%` }))));
    if (!r.predictions.length) list.replaceChildren(h("li", { class: "sub", text: "the output is not a class score vector" }));
    list.dataset.input = ref;
    $("class-list").replaceChildren(...r.predictions.map((p) => h("option", { value: `${p.class}: ${p.label}` })));
  } catch (e) {
    if (n === predSeq) list.replaceChildren(h("li", { class: "err", text: e.message }));
  }
}

export function buildSamples() {
  const box = $("samples");
  box.replaceChildren(...S.info.samples.map((ref) => {
    const name = ref.replace(/^sample:/, "");
    return h("button", { type: "button", class: "sample", "data-input": ref, "aria-pressed": "false", title: name,
      onclick: () => { stopWebcam(); setInput(ref); } },
    h("img", { src: url("/api/input.png", { input: ref }), alt: "", loading: "lazy", width: "40", height: "40" }),
    h("span", { text: name }));
  }));
}

// the data browser: a paged list of --data's images
export const PER_PAGE = 24;
let dataPage = 0;

// the data browser opened on its last page, or moved by ``step`` pages
export function browseData(step = 0) {
  if (!step) $("data-dialog").showModal();
  return showDataPage(dataPage + step);
}
export async function showDataPage(page) {
  const items = $("data-items");
  try {
    const r = await getJSON(url("/api/data", { page, per_page: PER_PAGE }));
    const pages = Math.max(1, Math.ceil(r.total / PER_PAGE));
    dataPage = Math.min(page, pages - 1);
    $("data-count").textContent = `${r.total} image${r.total === 1 ? "" : "s"}`;
    $("data-page").textContent = `page ${dataPage + 1} of ${pages}`;
    $("data-prev").disabled = dataPage <= 0;
    $("data-next").disabled = dataPage >= pages - 1;
    items.replaceChildren(...r.items.map((it) => h("button", { type: "button", class: "data-item", "data-input": it.input,
      title: it.name, onclick: () => { $("data-dialog").close(); stopWebcam(); setInput(it.input, it.name); } },
    h("img", { src: url("/api/input.png", { input: it.input }), alt: it.name, loading: "lazy", width: "96", height: "96" }),
    h("span", { text: it.name }))));
  } catch (e) {
    items.replaceChildren(h("p", { class: "err", text: e.message }));
  }
}

export async function uploadFile(file) {
  if (!file) return;
  stopWebcam();
  setStatus(`uploading ${file.name}…`);
  try {
    const r = await postJSON("/api/upload", file, file.type || "application/octet-stream");
    setStatus("");
    await setInput(r.input, `${file.name} (${r.input})`);
  } catch (e) {
    setStatus(`upload refused: ${e.message}`, true);
  }
}

// -- webcam: one frame at a time, the next only when the last one's views have arrived ------
export const cam = { stream: null, running: false, frames: 0, started: 0 };

export async function startWebcam() {
  const video = $("webcam-video");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus("this browser gives the page no webcam (it needs https or localhost)", true);
    return;
  }
  try {
    cam.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
  } catch (e) {
    setStatus(`webcam: ${e.message}`, true);
    return;
  }
  video.srcObject = cam.stream;
  video.hidden = false;
  try { await video.play(); } catch (_) { /* muted video plays anyway */ }
  cam.running = true;
  cam.frames = 0;
  cam.started = performance.now();
  const button = $("webcam-toggle");
  button.textContent = "Stop webcam";
  button.setAttribute("aria-pressed", "true");
  webcamLoop();
}

export function stopWebcam() {
  if (!cam.stream) return;
  cam.running = false;
  for (const t of cam.stream.getTracks()) t.stop();
  cam.stream = null;
  const video = $("webcam-video");
  video.srcObject = null;
  video.hidden = true;
  const button = $("webcam-toggle");
  button.textContent = "Start webcam";
  button.setAttribute("aria-pressed", "false");
}

export async function webcamLoop() {
  const video = $("webcam-video");
  const canvas = document.createElement("canvas");
  while (cam.running) {
    if (!video.videoWidth) { await sleep(50); continue; }
    const scale = Math.min(1, 480 / Math.max(video.videoWidth, video.videoHeight));
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
    if (!cam.running) break;
    try {
      const r = await postJSON("/api/upload", blob, "image/jpeg");
      if (!cam.running) break;
      cam.frames += 1;
      await setInput(r.input, `webcam frame ${cam.frames}`);
      const fps = cam.frames / ((performance.now() - cam.started) / 1000);
      $("webcam-status").textContent = `frame ${cam.frames} · ${fps.toFixed(1)} fps`;
      $("webcam-status").dataset.frames = cam.frames;
    } catch (e) {
      $("webcam-status").textContent = `frame refused: ${e.message}`;
      await sleep(1000);
    }
  }
}
