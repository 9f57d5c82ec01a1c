// Long work on the server (renders, scans, class maps, dropout), followed by server-sent events.
import { getJSON, h, postJSON, showImage, sleep } from "./api.js";

// A browser keeps about six connections per server; at most two job streams are open at once,
// the others wait their turn (the server's worker runs jobs one after another anyway).
export const STREAMS = 2;
export const streamQueue = [];
let streamsOpen = 0;
export const trackers = new Map();
export const ended = (st) => st.state === "done" || st.state === "failed" || st.state === "cancelled";

export class Tracker {
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

export function pump() {
  while (streamsOpen < STREAMS && streamQueue.length) streamQueue.shift().open();
}

export function track(status) {
  let t = trackers.get(status.id);
  if (!t) {
    t = new Tracker(status);
    trackers.set(status.id, t);
  }
  return t;
}

// A job's progress bar (and then its picture) in a slot; a newer job in the slot replaces it.
export const slotJobs = new WeakMap();
export function clearSlot(slot, ...content) {
  const old = slotJobs.get(slot);
  if (old) old.unsubscribe();
  slotJobs.delete(slot);
  slot.replaceChildren(...content);
}

export function jobBox(title) {
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
export async function followJob(slot, status, { title, picture, onDone } = {}) {
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
export async function runJob(slot, postUrl, options = {}) {
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
