# ruff: noqa: E501  (the page is JavaScript and CSS, wrapped as its own language wants)
"""The page that `to_html` fills in: one HTML file with its CSS and JavaScript inline.

The recorded backward arrives as JSON in a `<script type="application/json">` block; the script
below draws the graph as SVG and replays the steps. Nothing is fetched: the Content-Security-Policy
forbids every request (scripts and styles may only be the inline ones), so the file works offline
and opened straight from disk.
"""

PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<title>__TITLE__</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { padding: 8px 14px; background: #263238; color: #eee; display: flex; gap: 10px;
         align-items: center; flex-wrap: wrap; }
header h1 { font-size: 16px; margin: 0 12px 0 0; font-weight: 600; }
header button { font: inherit; padding: 3px 10px; }
#slider { width: 240px; }
#stepno { min-width: 110px; }
main { display: flex; align-items: flex-start; }
#graphbox { flex: 1 1 auto; overflow: auto; height: calc(100vh - 46px); }
#side { flex: 0 0 420px; height: calc(100vh - 46px); overflow: auto; padding: 10px 14px;
        background: #fff; border-left: 1px solid #ccc; box-sizing: border-box; }
#side h2 { font-size: 15px; margin: 6px 0; }
#side h3 { font-size: 13px; margin: 10px 0 2px; color: #555; }
.formula { font-family: ui-monospace, monospace; font-size: 12.5px; white-space: pre-wrap;
           background: #f3f0e8; padding: 4px 6px; border-radius: 3px; }
.arr { font-family: ui-monospace, monospace; font-size: 12px; white-space: pre; overflow-x: auto;
       background: #f5f7fa; padding: 3px 6px; border-radius: 3px; margin: 2px 0; }
.send { border-left: 3px solid #c62828; padding-left: 8px; margin: 8px 0; }
.plus { color: #c62828; font-weight: 600; }
svg text { font-family: ui-monospace, monospace; font-size: 11.5px; }
.value rect { fill: #fff; stroke: #555; }
.value.leaf rect { fill: #dbe9fb; stroke: #1e5aa8; }
.value.const rect { fill: #f4f4f4; stroke: #999; stroke-dasharray: 4 3; }
.value.output rect { stroke-width: 2.5; }
.value .lbl { font-weight: 700; }
.value .grad { fill: #777; }
.value.partial .grad { fill: #e65100; }
.value.complete .grad { fill: #2e7d32; font-weight: 700; }
.value.final .grad { fill: #1b5e20; font-weight: 700; }
.value.sink rect { stroke: #c62828; stroke-width: 3; }
.value.source rect { stroke: #6a1b9a; stroke-width: 3; }
.op rect { fill: #fde3bd; stroke: #c77c12; }
.op.done rect { fill: #eee; stroke: #aaa; }
.op.active rect { fill: #ffb74d; stroke: #c62828; stroke-width: 3; }
.edge { fill: none; stroke: #999; stroke-width: 1.3; }
.edge.hot { stroke: #c62828; stroke-width: 2.5; stroke-dasharray: 6 4; }
.edgelbl { fill: #666; font-size: 10px; }
.node { cursor: pointer; }
.selected rect { filter: drop-shadow(0 0 4px #1976d2); }
#check { display: none; padding: 10px 14px; }
body.checking #check { display: block; }
body.checking main { display: none; }
table { border-collapse: collapse; font-family: ui-monospace, monospace; font-size: 12.5px; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #eceff1; }
td.ok { color: #2e7d32; } td.bad { color: #c62828; font-weight: 700; }
.note { color: #666; font-size: 12.5px; }
</style>
</head>
<body>
<header>
  <h1>__TITLE__</h1>
  <button id="first" title="Home key">&#x25C0;&#x25C0; start</button>
  <button id="back" title="Left arrow">&#x25C0; back</button>
  <button id="next" title="Right arrow">next &#x25B6;</button>
  <button id="end" title="End key">run to end &#x25B6;&#x25B6;</button>
  <input id="slider" type="range" min="0" value="0" step="1">
  <span id="stepno"></span>
  <button id="zoombtn">zoom</button>
  <button id="checkbtn">check (finite differences)</button>
</header>
<main>
  <div id="graphbox"><svg id="graph" xmlns="http://www.w3.org/2000/svg"></svg></div>
  <div id="side"><div id="steppanel"></div><div id="nodepanel"></div></div>
</main>
<div id="check"></div>
<script type="application/json" id="record">__DATA__</script>
<script>
"use strict";
const R = JSON.parse(document.getElementById("record").textContent);
const SVGNS = "http://www.w3.org/2000/svg";
const VW = 184, VH = 66, OW = 112, OH = 40, GAPX = 36, GAPY = 18;
const nstep = R.steps.length;
let step = 0, selected = null;

function num(x) { return typeof x === "string" ? Number(x) : x; }   // "NaN", "Infinity"
function g4(x) {                        // like Python's f"{x:.4g}"
  x = num(x);
  if (!isFinite(x)) return isNaN(x) ? "nan" : (x > 0 ? "inf" : "-inf");
  if (Number.isInteger(x) && Math.abs(x) < 1e16) return String(x);
  let s = x.toPrecision(4);
  if (s.includes("e")) { let [m, e] = s.split("e"); if (m.includes(".")) m = m.replace(/\.?0+$/, "");
    const n = Number(e); return m + "e" + (n < 0 ? "-" : "+") + String(Math.abs(n)).padStart(2, "0"); }
  if (s.includes(".")) s = s.replace(/\.?0+$/, "");
  return s;
}
function full(x) { x = num(x); return isFinite(x) ? String(x) : g4(x); }
function shapeText(shape) { return shape.length ? "(" + shape.join(", ") + (shape.length === 1 ? ",)" : ")") : "scalar"; }
// An array packed by Python: {shape, dtype, values} when small, {shape, dtype, stats, head} when large.
function short(p) {
  if (!p) return "";
  if (p.values) {
    if (p.shape.length === 0) return g4(p.values[0]);
    if (p.values.length <= 3) return "[" + p.values.map(g4).join(", ") + "]";
    return "[" + p.values.slice(0, 2).map(g4).join(", ") + ", …]";
  }
  return "|max| " + g4(p.stats.absmax);
}
function nested(vals, shape, fmt) {
  if (shape.length === 0) return fmt(vals[0]);
  if (shape.length === 1) return "[" + vals.map(fmt).join(", ") + "]";
  const step = vals.length / shape[0], rows = [];
  for (let i = 0; i < shape[0]; i++) rows.push(nested(vals.slice(i * step, (i + 1) * step), shape.slice(1), fmt));
  return "[" + rows.join(",\n ") + "]";
}
function long(p, fmt) {
  if (!p) return "(none)";
  fmt = fmt || g4;
  if (p.values) return nested(p.values, p.shape, fmt);
  const s = p.stats;
  return shapeText(p.shape) + " " + p.dtype + "\nmin " + fmt(s.min) + "  max " + fmt(s.max) + "  mean " +
    fmt(s.mean) + "  |max| " + fmt(s.absmax) + "\nfirst entries: " + p.head.map(fmt).join(", ") + ", …";
}
function el(tag, attrs, text) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function cut(text, n) { n = Math.max(n, 6); return text.length > n ? text.slice(0, n - 1) + "…" : text; }
function div(cls, text) { return el("div", {class: cls}, text); }

// ---- layout: columns from Python (inputs left, loss right), pixel positions here ----------
const V = R.values, O = R.ops, pos = {};
const ncol = 1 + Math.max(...V.map(v => v.col), ...O.map(o => o.col));
const colx = [], colRows = [];
let x = 20;
for (let c = 0; c < ncol; c++) { colx.push(x); x += (c % 2 === 0 ? VW : OW) + GAPX; colRows.push(0); }
for (const n of V.concat(O)) colRows[n.col] = Math.max(colRows[n.col], n.row + 1);
const rowH = VH + GAPY, height = Math.max(...colRows) * rowH + 40;
function place(n, w, h) {
  const top = (height - colRows[n.col] * rowH) / 2 + n.row * rowH + (rowH - h) / 2;
  pos[n.id] = {x: colx[n.col], y: top, w: w, h: h};
}
V.forEach(v => place(v, VW, VH)); O.forEach(o => place(o, OW, OH));
const svg = document.getElementById("graph");
svg.setAttribute("viewBox", `0 0 ${x} ${height}`);
let zoom = 1;
function setZoom(fit) {   // "fit": the whole graph in the window (not below 60%), else 100%
  const box = document.getElementById("graphbox");
  zoom = fit ? Math.max(0.6, Math.min(1, (box.clientWidth - 10) / x, (box.clientHeight - 10) / height)) : 1;
  svg.setAttribute("width", x * zoom); svg.setAttribute("height", height * zoom);
  document.getElementById("zoombtn").textContent = zoom < 1 ? "zoom 100%" : "zoom to fit";
}
const defs = el("svg:defs");
const marker = el("svg:marker", {id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto"});
marker.appendChild(el("svg:path", {d: "M0,0 L10,5 L0,10 z", fill: "#999"}));
defs.appendChild(marker); svg.appendChild(defs);
const edges = {};   // "value->op" -> path
function curve(a, b) {
  const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2, m = (x1 + x2) / 2;
  return `M${x1},${y1} C${m},${y1} ${m},${y2} ${x2},${y2}`;
}
for (const o of O) {
  o.inputs.forEach((vid, i) => {
    const p = el("svg:path", {class: "edge", d: curve(pos[vid], pos[o.id]), "marker-end": "url(#arrow)"});
    svg.appendChild(p); edges[vid + "->" + o.id + "#" + i] = p;
    if (o.inputs.length > 1) {
      const b = pos[o.id];
      svg.appendChild(el("svg:text", {class: "edgelbl", x: b.x - 4, y: b.y + b.h / 2 - 5 + (i - (o.inputs.length - 1) / 2) * 11,
                                      "text-anchor": "end"}, o.args[i]));
    }
  });
  svg.appendChild(el("svg:path", {class: "edge", d: curve(pos[o.id], pos[o.output]), "marker-end": "url(#arrow)"}));
}
const boxes = {};
for (const v of V) {
  const b = pos[v.id], g = el("svg:g", {class: "node value " + v.kind, id: "v" + v.id, transform: `translate(${b.x},${b.y})`});
  g.appendChild(el("svg:rect", {width: b.w, height: b.h, rx: 5}));
  g.appendChild(el("svg:title", {}, v.label));   // the full name on hover; the box shows its start
  g.appendChild(el("svg:text", {class: "lbl", x: 7, y: 15}, cut(v.label, 19 - shapeText(v.shape).length)));
  g.appendChild(el("svg:text", {x: b.w - 7, y: 15, "text-anchor": "end", fill: "#666"}, shapeText(v.shape)));
  g.appendChild(el("svg:text", {class: "val", x: 7, y: 34}, "= " + short(v.value)));
  const gt = el("svg:text", {class: "grad", x: 7, y: 55}, "");
  g.appendChild(gt); boxes[v.id] = {g: g, grad: gt};
  g.addEventListener("click", () => select(v.id));
  svg.appendChild(g);
}
for (const o of O) {
  const b = pos[o.id], g = el("svg:g", {class: "node op", id: "o" + o.id, transform: `translate(${b.x},${b.y})`});
  g.appendChild(el("svg:rect", {width: b.w, height: b.h, rx: 16}));
  g.appendChild(el("svg:title", {}, o.call));
  g.appendChild(el("svg:text", {x: b.w / 2, y: o.params ? 17 : 24, "text-anchor": "middle", "font-weight": 700}, cut(o.name, 14)));
  if (o.params) g.appendChild(el("svg:text", {x: b.w / 2, y: 31, "text-anchor": "middle", "font-size": 10},
                                 o.params.length > 18 ? o.params.slice(0, 17) + "…" : o.params));
  boxes[o.id] = {g: g};
  g.addEventListener("click", () => select(o.id));
  svg.appendChild(g);
}

// ---- the state after `s` steps: which gradient every tensor holds ------------------------
function stateAt(s) {
  const grad = {};   // value id -> {p: packed array, how: "partial" | "complete" | "final"}
  for (let k = 0; k < s; k++) {
    const st = R.steps[k], o = O[st.op - V.length];
    grad[o.output] = {p: st.grad_out, how: "complete"};
    for (const snd of st.sends) grad[snd.input] = {p: snd.after, how: "partial"};
  }
  if (s === nstep) for (const v of V) if (v.final_grad) grad[v.id] = {p: v.final_grad, how: "final"};
  return grad;
}
function render() {
  const grad = stateAt(step), st = step > 0 ? R.steps[step - 1] : null;
  const active = st ? st.op : -1;
  const doneOps = new Set(R.steps.slice(0, Math.max(0, step - 1)).map(t => t.op));
  for (const v of V) {
    const b = boxes[v.id], gr = grad[v.id];
    b.g.classList.remove("partial", "complete", "final", "sink", "source");
    if (gr) { b.g.classList.add(gr.how); b.grad.textContent = (gr.how === "final" ? ".grad = " : "grad = ") + short(gr.p); }
    else b.grad.textContent = v.requires_grad ? "grad: not yet" : "no grad needed";
  }
  for (const o of O) {
    boxes[o.id].g.classList.toggle("active", o.id === active);
    boxes[o.id].g.classList.toggle("done", doneOps.has(o.id));
  }
  for (const k in edges) edges[k].classList.remove("hot");
  if (st) {
    const o = O[st.op - V.length];
    boxes[o.output].g.classList.add("source");
    const gb = document.getElementById("graphbox"), p = pos[o.id];   // keep the active op in view
    const bx = p.x * zoom, by = p.y * zoom, bw = p.w * zoom, bh = p.h * zoom;
    if (bx < gb.scrollLeft || bx + bw > gb.scrollLeft + gb.clientWidth) gb.scrollLeft = bx - gb.clientWidth / 2;
    if (by < gb.scrollTop || by + bh > gb.scrollTop + gb.clientHeight) gb.scrollTop = by - gb.clientHeight / 2;
    o.inputs.forEach((vid, i) => { if (st.sends.some(s => s.slot === i)) { edges[vid + "->" + o.id + "#" + i].classList.add("hot"); boxes[vid].g.classList.add("sink"); } });
  }
  document.getElementById("slider").value = step;
  document.getElementById("stepno").textContent = `step ${step} / ${nstep}`;
  stepPanel(st);
  if (selected !== null) nodePanel(selected, grad);
}
function formulaBlock(parent, title, text) {
  parent.appendChild(el("h3", {}, title)); parent.appendChild(div("formula", text));
}
function arrBlock(parent, p, id) { const d = div("arr", long(p)); if (id) d.id = id; parent.appendChild(d); }
function stepPanel(st) {
  const P = document.getElementById("steppanel"); P.textContent = "";
  if (!st) {
    P.appendChild(el("h2", {}, "Before backward"));
    P.appendChild(div("note", `The forward pass made ${R.values.find(v => v.kind.includes("output")).label} from the inputs on the left. ` +
      `backward() now visits the ${nstep} ops from right to left, each once, after every op that used its output. ` +
      `Press next (or the right arrow key) to run the first op's backward.`));
    return;
  }
  const o = O[st.op - V.length], out = V[o.output];
  P.appendChild(el("h2", {id: "stephead"}, `Step ${st.index}: ${o.call}`));
  formulaBlock(P, "forward", o.forward);
  formulaBlock(P, "vector-Jacobian product (g = dL/d" + out.label + ")", o.vjp);
  formulaBlock(P, "rule", o.rule);
  P.appendChild(el("h3", {}, `gradient arriving at the output: g = dL/d${out.label}`));
  arrBlock(P, st.grad_out, "gradout");
  if (!st.sends.length) P.appendChild(div("note", "No input needs a gradient."));
  for (const snd of st.sends) {
    const box = div("send"), v = V[snd.input];
    box.setAttribute("data-input", v.label);
    box.appendChild(el("h3", {}, `sent to ${o.args[snd.slot]} = ${v.label}:  grad ${v.label} += …`));
    arrBlock(box, snd.grad);
    if (snd.before) {
      box.appendChild(div("plus", `${v.label} is used by more than one op: its gradient is the sum ` +
        `of their contributions. It already held:`));
      arrBlock(box, snd.before);
    }
    box.appendChild(el("h3", {}, snd.before ? `grad ${v.label} so far = what it held + this contribution`
                                             : `grad ${v.label} so far`));
    arrBlock(box, snd.after, "after-" + snd.slot);
    P.appendChild(box);
  }
  if (st.index === nstep) P.appendChild(div("note", "That was the last op: every leaf now holds its .grad (green)."));
}
function nodePanel(id, grad) {
  const P = document.getElementById("nodepanel"); P.textContent = "";
  P.appendChild(el("hr"));
  if (id < V.length) {
    const v = V[id];
    P.appendChild(el("h2", {}, `${v.label}  ${shapeText(v.shape)} ${v.dtype}`));
    P.appendChild(div("note", v.about));
    P.appendChild(el("h3", {}, "value")); arrBlock(P, v.value);
    const gr = grad[id];
    P.appendChild(el("h3", {}, gr ? (gr.how === "final" ? ".grad (the engine's, full precision)" : "gradient so far") : "gradient"));
    P.appendChild(div("arr", gr ? long(gr.p, gr.how === "final" ? full : g4) : "(not reached yet)"));
  } else {
    const o = O[id - V.length];
    P.appendChild(el("h2", {}, o.call));
    P.appendChild(div("note", o.qualname));
    formulaBlock(P, "forward", o.forward); formulaBlock(P, "VJP", o.vjp); formulaBlock(P, "rule", o.rule);
  }
}
function select(id) {
  if (selected !== null) boxes[selected].g.classList.remove("selected");
  selected = id; boxes[id].g.classList.add("selected"); render();
}
function go(s) { step = Math.max(0, Math.min(nstep, s)); render(); }

// ---- the check view: finite differences next to the gradient ------------------------------
function buildCheck() {
  const C = document.getElementById("check");
  C.appendChild(el("h2", {}, "Check: each leaf's gradient against a finite-difference estimate"));
  C.appendChild(div("note", R.check.about));
  if (R.check.error) { C.appendChild(div("bad", R.check.error)); return; }
  const t = el("table", {id: "checktable"});
  const head = el("tr");
  for (const h of ["leaf", "entry", ".grad (engine)", "finite difference", "rel. error"]) head.appendChild(el("th", {}, h));
  t.appendChild(head);
  for (const leaf of R.check.leaves) {
    for (const e of leaf.entries) {
      const tr = el("tr", {"data-leaf": leaf.label});
      const err = Math.abs(num(e.grad) - num(e.fd)) / Math.max(1e-8, Math.abs(num(e.grad)) + Math.abs(num(e.fd)));
      tr.appendChild(el("td", {style: "text-align:left"}, leaf.label));
      tr.appendChild(el("td", {}, "[" + e.index.join(", ") + "]"));
      tr.appendChild(el("td", {class: "grad"}, full(e.grad)));
      tr.appendChild(el("td", {class: "fd"}, full(e.fd)));
      tr.appendChild(el("td", {class: err < R.check.tolerance ? "ok" : "bad"}, err.toExponential(1)));
      t.appendChild(tr);
    }
    if (leaf.skipped) { const tr = el("tr"); tr.appendChild(el("td", {colspan: 5, class: "note", style: "text-align:left"}, leaf.skipped)); t.appendChild(tr); }
  }
  C.appendChild(t);
}

const slider = document.getElementById("slider");
slider.max = nstep;
slider.addEventListener("input", () => go(Number(slider.value)));
document.getElementById("first").onclick = () => go(0);
document.getElementById("back").onclick = () => go(step - 1);
document.getElementById("next").onclick = () => go(step + 1);
document.getElementById("end").onclick = () => go(nstep);
document.getElementById("checkbtn").onclick = () => {
  const on = document.body.classList.toggle("checking");
  document.getElementById("checkbtn").textContent = on ? "back to the graph" : "check (finite differences)";
};
document.addEventListener("keydown", e => {
  if (e.target.tagName === "INPUT") return;   // the focused slider moves itself (its input event)
  if (e.key === "ArrowRight") { go(step + 1); e.preventDefault(); }
  else if (e.key === "ArrowLeft") { go(step - 1); e.preventDefault(); }
  else if (e.key === "Home") go(0);
  else if (e.key === "End") go(nstep);
});
document.getElementById("zoombtn").onclick = () => { setZoom(zoom === 1); render(); };
setZoom(true);
buildCheck();
render();
</script>
</body>
</html>
"""
