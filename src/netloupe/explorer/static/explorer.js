// netloupe explorer: the page over the explorer's routes (app.py). Plain DOM and fetch, no library.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // -- small helpers --------------------------------------------------------------------------
  function h(tag, attrs = {}, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat()) if (kid != null) e.append(kid);
    return e;
  }

  function url(path, params = {}) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v != null) q.set(k, v);
    const s = q.toString();
    return s ? `${path}?${s}` : path;
  }

  async function failure(res) {
    let detail = `${res.status} ${res.statusText}`;
    try {
      const body = await res.json();
      if (body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (_) { /* not JSON */ }
    return new Error(detail);
  }

  let pending = 0;
  function busy(delta) {
    pending += delta;
    $("busy").hidden = pending <= 0;
  }

  async function request(u, opts) {
    busy(1);
    try {
      const res = await fetch(u, { cache: "no-store", ...opts });
      if (!res.ok) throw await failure(res);
      return res;
    } finally {
      busy(-1);
    }
  }
  const getJSON = async (u) => (await request(u)).json();
  const postJSON = async (u, body, type) =>
    (await request(u, { method: "POST", body, headers: type ? { "Content-Type": type } : {} })).json();

  function setStatus(text, error = false) {
    const s = $("status");
    s.textContent = text;
    s.classList.toggle("error", error);
  }

  const fmt = (v) => (v == null || Number.isNaN(v) ? "–" : Math.abs(v) >= 100 || (Math.abs(v) < 0.01 && v !== 0)
    ? v.toExponential(2) : v.toFixed(3));
  const shapeText = (row) => row.shape.join("×");

  // A picture shown in an <img>: fetched (so a failure's text can be shown), newest request wins.
  const imageSeq = new WeakMap();
  async function showImage(img, src, errEl) {
    const n = (imageSeq.get(img) || 0) + 1;
    imageSeq.set(img, n);
    img.setAttribute("aria-busy", "true");
    try {
      const res = await request(src);
      const blob = await res.blob();
      if (imageSeq.get(img) !== n) return null;  // a newer picture was asked for meanwhile
      const old = img.dataset.objectUrl;
      const obj = URL.createObjectURL(blob);
      img.dataset.objectUrl = obj;
      img.src = obj;
      try { await img.decode(); } catch (_) { /* shown anyway */ }
      if (old) URL.revokeObjectURL(old);
      if (imageSeq.get(img) !== n) return null;
      img.hidden = false;
      img.classList.remove("failed");
      if (errEl) errEl.hidden = true;
      return res;
    } catch (e) {
      if (imageSeq.get(img) !== n) return null;
      img.classList.add("failed");
      if (errEl) {
        errEl.textContent = e.message;
        errEl.hidden = false;
      }
      return null;
    } finally {
      if (imageSeq.get(img) === n) img.removeAttribute("aria-busy");
    }
  }

  // -- jobs: long work on the server, followed by server-sent events ---------------------------
  // A browser keeps about six connections per server; at most two job streams are open at once,
  // the others wait their turn (the server's worker runs jobs one after another anyway).
  const STREAMS = 2;
  const streamQueue = [];
  let streamsOpen = 0;
  const trackers = new Map();
  const ended = (st) => st.state === "done" || st.state === "failed" || st.state === "cancelled";

  class Tracker {
    constructor(status) {
      this.status = status;
      this.subs = new Set();
      this.done = new Promise((resolve) => { this.resolve = resolve; });
      if (ended(status)) this.resolve(status);
      else { streamQueue.push(this); pump(); }
    }
    subscribe(fn) {
      this.subs.add(fn);
      fn(this.status);
      return () => this.subs.delete(fn);
    }
    set(status) {
      if (ended(this.status)) return;
      this.status = status;
      for (const fn of this.subs) fn(status);
      if (ended(status)) this.resolve(status);
    }
    open() {
      streamsOpen += 1;
      const es = new EventSource(`/api/jobs/${encodeURIComponent(this.status.id)}/events`);
      let closed = false;
      const close = () => {
        if (closed) return;
        closed = true;
        es.close();
        streamsOpen -= 1;
        pump();
      };
      es.onmessage = (ev) => {
        const st = JSON.parse(ev.data);
        this.set(st);
        if (ended(st)) close();
      };
      es.onerror = () => {  // the stream broke before the job ended: ask now and then instead
        close();
        if (!ended(this.status)) this.poll();
      };
    }
    async poll() {
      while (!ended(this.status)) {
        await sleep(1000);
        try {
          this.set(await getJSON(`/api/jobs/${encodeURIComponent(this.status.id)}`));
        } catch (e) {
          this.set({ ...this.status, state: "failed", error: e.message });
        }
      }
    }
  }

  function pump() {
    while (streamsOpen < STREAMS && streamQueue.length) streamQueue.shift().open();
  }

  function track(status) {
    let t = trackers.get(status.id);
    if (!t) {
      t = new Tracker(status);
      trackers.set(status.id, t);
    }
    return t;
  }

  // A job's progress bar (and then its picture) in a slot; a newer job in the slot replaces it.
  const slotJobs = new WeakMap();
  function clearSlot(slot, ...content) {
    const old = slotJobs.get(slot);
    if (old) old.unsubscribe();
    slotJobs.delete(slot);
    slot.replaceChildren(...content);
  }

  function jobBox(title) {
    const label = h("span", { class: "job-desc", text: title });
    const count = h("span", { class: "job-count" });
    const bar = h("progress", { max: "1", "aria-label": `${title}: progress` });
    const err = h("p", { class: "err", hidden: true });
    const el = h("div", { class: "job", "data-state": "queued" }, h("div", { class: "job-head" }, label, count), bar, err);
    const update = (st) => {
      el.dataset.state = st.state;
      el.dataset.job = st.id || "";
      label.textContent = st.state === "queued" ? `${title}: queued` : st.desc ? `${title}: ${st.desc}` : title;
      if (st.total) {
        bar.max = st.total;
        bar.value = st.state === "done" ? st.total : st.done;
        count.textContent = `${st.done}/${st.total}`;
      } else if (st.state === "done") {
        bar.max = 1;
        bar.value = 1;
        count.textContent = "";
      } else {
        bar.removeAttribute("value");  // indeterminate
        count.textContent = st.done ? String(st.done) : "";
      }
      if (st.state === "failed" || st.state === "cancelled") {
        err.textContent = st.state === "cancelled" ? "stopped: another unit or layer was chosen" : st.error || "the job failed";
        err.hidden = false;
        bar.hidden = true;
      }
    };
    return { el, update };
  }

  // Follow the job of ``status`` in slot (its progress, then its picture); a newer job in the slot
  // replaces it. Returns the final status (null when the slot moved on to something else).
  async function followJob(slot, status, { title, picture, onDone } = {}) {
    const box = jobBox(title);
    clearSlot(slot, box.el);
    const mine = { unsubscribe() {} };
    slotJobs.set(slot, mine);
    const tracker = track(status);
    mine.unsubscribe = tracker.subscribe(box.update);
    const final = await tracker.done;
    if (slotJobs.get(slot) !== mine) return null;
    if (final.state === "done" && picture) {
      const img = h("img", { class: "result", alt: picture, hidden: true });
      const err = h("p", { class: "err", hidden: true });
      box.el.append(img, err);
      await showImage(img, `/api/jobs/${encodeURIComponent(final.id)}/result.png`, err);
      box.el.classList.add("has-result");
    }
    if (onDone) onDone(final);
    return final;
  }

  // POST postUrl (which starts a job) and follow the job in slot (see followJob).
  async function runJob(slot, postUrl, options = {}) {
    const box = jobBox(options.title);
    clearSlot(slot, box.el);
    const mine = { unsubscribe() {} };
    slotJobs.set(slot, mine);
    let status;
    try {
      status = await postJSON(postUrl);
    } catch (e) {
      box.update({ state: "failed", error: e.message });
      return null;
    }
    if (slotJobs.get(slot) !== mine) return null;
    return followJob(slot, status, options);
  }

  // -- state ----------------------------------------------------------------------------------
  const S = {
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
  const BACKPROP_CAPTIONS = {
    saliency: "gradient",
    guided_backprop: "guided backprop",
    deconvnet: "deconvnet",
    grad_cam: "Grad-CAM at the layer's input",
  };

  function readHash() {
    return Object.fromEntries(new URLSearchParams(location.hash.slice(1)));
  }
  function writeHash() {
    const p = new URLSearchParams();
    if (S.input && !S.input.startsWith("upload:")) p.set("input", S.input);
    if (S.layer) p.set("layer", S.layer);
    if (S.channel != null) p.set("channel", S.channel);
    if ($("cmap").value !== "viridis") p.set("cmap", $("cmap").value);
    if ($("norm").value !== "channel") p.set("norm", $("norm").value);
    history.replaceState(null, "", `#${p}`);
  }

  // -- input ----------------------------------------------------------------------------------
  const describe = (ref) => S.names.get(ref) || ref;

  function setInput(ref, name) {
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
  function refreshInputViews() {
    const ref = S.input;
    const views = [loadPictures(ref), loadPredictions(ref), loadGrid()];
    if (S.channel != null) views.push(loadUnitInputViews());
    return Promise.all(views);
  }

  async function loadPictures(ref) {
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
  async function loadPredictions(ref) {
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

  function buildSamples() {
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
  const PER_PAGE = 24;
  let dataPage = 0;
  async function showDataPage(page) {
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

  async function uploadFile(file) {
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
  const cam = { stream: null, running: false, frames: 0, started: 0 };

  async function startWebcam() {
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

  function stopWebcam() {
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

  async function webcamLoop() {
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

  // -- layers: the tree -----------------------------------------------------------------------
  function buildTree() {
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

  function treeNode(name) {
    let node = S.tree;
    for (const part of name.split(".")) {
      node = node && node.children.get(part);
    }
    return node;
  }

  function openPathTo(name) {
    for (let node = treeNode(name); node; node = node.parent) if (node.details && node.path !== name) node.details.open = true;
  }

  function filterTree(query) {
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

  function markScanned() {
    for (const b of document.querySelectorAll(".layer-btn")) b.classList.toggle("scanned", S.scanned.has(b.dataset.layer));
  }

  function defaultLayer() {
    // a middle layer with a spatial grid and not too many channels: a readable first view
    const rows = S.info.layers;
    const fits = rows.map((r, i) => [r, i]).filter(([r]) => r.grid.length === 2 && r.grid[0] >= 7 && r.channels <= 256);
    if (!fits.length) return rows[0].name;
    const aim = 0.6 * rows.length;
    fits.sort((a, b) => Math.abs(a[1] - aim) - Math.abs(b[1] - aim));
    return fits[0][0].name;
  }

  function selectLayer(name, { load = true } = {}) {
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
  async function loadGrid() {
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

  function fitGrid() {
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

  function tileAt(ev) {
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

  function markTile() {
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

  // -- one unit -------------------------------------------------------------------------------
  // Choosing a unit clears its panel at once (nothing of the last unit stays under the new name),
  // then, once the choice rests a moment, asks for its views; answers for a unit no longer chosen
  // are dropped. With --data, the shown layer is scanned and the chosen unit rendered without a
  // click (each with its progress); the buttons run them again.
  let unitTimer = null;
  const unitKey = () => `${S.layer}:${S.channel}`;

  function selectChannel(c) {
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

  function clearUnitPanel() {
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

  function backpropImages() {
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
  function loadUnitInputViews() {
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
  async function loadUnitInfo() {
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

  function startRender(layer, channel, { auto = false, again = false } = {}) {
    const again_ = $("render-again");
    again_.hidden = true;
    runJob($("render-slot"), url("/api/render", { layer, channel, auto: auto || null, again: again || null }),
      { title: "render", picture: `the feature visualization of ${layer}:${channel}` }).then((final) => {
      if (final && layer === S.layer && channel === S.channel) again_.hidden = false;
    });
  }

  async function showScanned(info, layer, channel) {
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

  function enlargePatch(layer, channel, index, caption) {
    const dialog = $("patch-dialog");
    $("patch-caption").textContent = `${layer}:${channel} · top ${index + 1} · ${caption}`;
    const big = $("patch-big");
    big.hidden = true;
    showImage(big, url("/api/unit/patch.png", { layer, channel, index, size: 480 }));
    dialog.showModal();
  }

  // a layer's scan: started for the shown layer by itself; its progress shows above the grid
  const scans = new Map();  // layer -> { status: the job's, once started; done: a promise of its final status }
  function startScan(layer, { auto = false, again = false } = {}) {
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

  function followScan(layer, entry) {
    followJob($("layer-scan"), entry.status, { title: `scan of ${layer} on the data` });
  }

  // the scan line above the grid for the layer shown: scanned (and a button to scan again), its
  // scan's progress, or a scan started now
  function showLayerScan(layer) {
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

  // -- class attribution and dropout: jobs per input ----------------------------------------
  function markStale() {
    for (const [panel, label] of [["class-maps", "class-for"], ["dropout-slot", "dropout-for"]]) {
      const shown = $(panel).dataset.input;
      $(label).textContent = shown ? `for ${describe(shown)}${shown !== S.input ? " (an earlier input)" : ""}${$(panel).dataset.target ? ` · target ${$(panel).dataset.target}` : ""}` : "";
    }
  }

  function classTarget() {
    const text = $("class-target").value.trim();
    if (!text) return "top";
    const number = text.match(/^(-?\d+)\s*(:.*)?$/);
    if (number) return number[1];
    const label = S.predictions.find((p) => p.label.toLowerCase() === text.toLowerCase());
    return label ? String(label.class) : text;  // "top", or a unit "layer:channel"
  }

  function explain() {
    const target = classTarget();
    const ref = S.input;
    const box = $("class-maps");
    box.dataset.input = ref;
    box.dataset.target = target;
    markStale();
    const chosen = new Set([...document.querySelectorAll("#class-methods input:checked")].map((c) => c.value));
    box.replaceChildren(...S.info.methods.filter((m) => chosen.has(m.name)).map((m) => {
      const slot = h("div", { class: "slot" });
      runJob(slot, url("/api/class", { input: ref, method: m.name, target }), { title: m.name, picture: `${m.caption} for ${target} on ${describe(ref)}` });
      return h("figure", { class: "card", "data-method": m.name }, slot, h("figcaption", { text: m.caption }));
    }));
  }

  function defaultDropoutLayer() {
    // the last layer that runs (its innermost module): dropout must act before the matched layer,
    // and a network's dropout usually sits right before its last layer
    const rows = S.info.layers;
    const names = rows.map((r) => r.name.split("#")[0]);
    for (let i = rows.length - 1; i >= 0; i -= 1) {
      if (!names.some((n) => n.startsWith(`${names[i]}.`))) return rows[i].name;
    }
    return rows[rows.length - 1].name;
  }

  function buildMethods() {
    $("class-methods").append(...S.info.methods.map((m) => h("label", { class: "method" },
      h("input", { type: "checkbox", value: m.name, checked: true }), m.name.replace(/_/g, " "))));
  }

  function buildDropoutSelect() {
    const select = $("dropout-layer");
    select.replaceChildren(...S.info.layers.map((r) => h("option", { value: r.name, text: `${r.name}  (${shapeText(r)})` })));
    select.value = defaultDropoutLayer();
  }

  function dropout() {
    const slot = $("dropout-slot");
    const layer = $("dropout-layer").value;
    slot.dataset.input = S.input;
    slot.dataset.target = "";
    markStale();
    runJob(slot, url("/api/dropout", { input: S.input, layer, n: 4 }), { title: `dropout at ${layer}`, picture: `4 dropout samples of ${describe(S.input)} at ${layer}, in input space` });
  }

  // -- wiring ---------------------------------------------------------------------------------
  function bind() {
    $("upload").addEventListener("change", (e) => { uploadFile(e.target.files[0]).then(() => { e.target.value = ""; }); });
    $("webcam-toggle").addEventListener("click", () => (cam.stream ? stopWebcam() : startWebcam()));
    $("data-open").addEventListener("click", () => { $("data-dialog").showModal(); showDataPage(dataPage); });
    $("data-close").addEventListener("click", () => $("data-dialog").close());
    $("data-prev").addEventListener("click", () => showDataPage(dataPage - 1));
    $("data-next").addEventListener("click", () => showDataPage(dataPage + 1));
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
})();
