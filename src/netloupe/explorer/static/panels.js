// Class attribution and dropout: jobs per input.
import { $, h, shapeText, url } from "./api.js";
import { describe } from "./input.js";
import { runJob } from "./jobs.js";
import { S } from "./state.js";

export function markStale() {
  for (const [panel, label] of [["class-maps", "class-for"], ["dropout-slot", "dropout-for"]]) {
    const shown = $(panel).dataset.input;
    $(label).textContent = shown ? `for ${describe(shown)}${shown !== S.input ? " (an earlier input)" : ""}${$(panel).dataset.target ? ` · target ${$(panel).dataset.target}` : ""}` : "";
  }
}

export function classTarget() {
  const text = $("class-target").value.trim();
  if (!text) return "top";
  const number = text.match(/^(-?\d+)\s*(:.*)?$/);
  if (number) return number[1];
  const label = S.predictions.find((p) => p.label.toLowerCase() === text.toLowerCase());
  return label ? String(label.class) : text;  // "top", or a unit "layer:channel"
}

export function explain() {
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

export function defaultDropoutLayer() {
  // the last layer that runs (its innermost module): dropout must act before the matched layer,
  // and a network's dropout usually sits right before its last layer
  const rows = S.info.layers;
  const names = rows.map((r) => r.name.split("#")[0]);
  for (let i = rows.length - 1; i >= 0; i -= 1) {
    if (!names.some((n) => n.startsWith(`${names[i]}.`))) return rows[i].name;
  }
  return rows[rows.length - 1].name;
}

export function buildMethods() {
  $("class-methods").append(...S.info.methods.map((m) => h("label", { class: "method" },
    h("input", { type: "checkbox", value: m.name, checked: true }), m.name.replace(/_/g, " "))));
}

export function buildDropoutSelect() {
  const select = $("dropout-layer");
  select.replaceChildren(...S.info.layers.map((r) => h("option", { value: r.name, text: `${r.name}  (${shapeText(r)})` })));
  select.value = defaultDropoutLayer();
}

export function dropout() {
  const slot = $("dropout-slot");
  const layer = $("dropout-layer").value;
  slot.dataset.input = S.input;
  slot.dataset.target = "";
  markStale();
  runJob(slot, url("/api/dropout", { input: S.input, layer, n: 4 }), { title: `dropout at ${layer}`, picture: `4 dropout samples of ${describe(S.input)} at ${layer}, in input space` });
}
