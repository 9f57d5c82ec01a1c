// The page's plumbing: DOM building, requests (with the busy mark), pictures fetched into <img>.

export const $ = (id) => document.getElementById(id);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// -- small helpers --------------------------------------------------------------------------
export function h(tag, attrs = {}, ...kids) {
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

export function url(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null) q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

export async function failure(res) {
  let detail = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (_) { /* not JSON */ }
  return new Error(detail);
}

let pending = 0;
export function busy(delta) {
  pending += delta;
  $("busy").hidden = pending <= 0;
}

export async function request(u, opts) {
  busy(1);
  try {
    const res = await fetch(u, { cache: "no-store", ...opts });
    if (!res.ok) throw await failure(res);
    return res;
  } finally {
    busy(-1);
  }
}
export const getJSON = async (u) => (await request(u)).json();
export const postJSON = async (u, body, type) =>
  (await request(u, { method: "POST", body, headers: type ? { "Content-Type": type } : {} })).json();

export function setStatus(text, error = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", error);
}

export const fmt = (v) => (v == null || Number.isNaN(v) ? "–" : Math.abs(v) >= 100 || (Math.abs(v) < 0.01 && v !== 0)
  ? v.toExponential(2) : v.toFixed(3));
export const shapeText = (row) => row.shape.join("×");

// A picture shown in an <img>: fetched (so a failure's text can be shown), newest request wins.
export const imageSeq = new WeakMap();
export async function showImage(img, src, errEl) {
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
