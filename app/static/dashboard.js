// ModelKiln dashboard: plain JavaScript, no build step, no third-party code.
//
// Talks to the /v1 REST API: polls the job list, builds the submit form from
// /dashboard/specs.json (made from ml.specs), follows a job's Server-Sent Events and
// draws its loss curves on <canvas>. EventSource resends Last-Event-ID when it
// reconnects (e.g. after a server restart), and every event carries its per-job
// sequence number, so nothing is drawn twice even after a full replay.

const $ = (sel, root = document) => root.querySelector(sel);
const POLL_MS = 2000;
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const COLORS = {
  red: "#e03131", blue: "#1c7ed6", green: "#2f9e44", violet: "#7048e8",
  orange: "#f08c00", teal: "#0ca678", pink: "#d6336c", gray: "#868e96",
};

// Which series go on which chart, per model kind ("all series of that model").
const CHARTS = {
  gan: [
    { id: "losses", title: "Losses", series: [
      { key: "d_loss", label: "D loss", color: COLORS.red },
      { key: "g_loss", label: "G loss", color: COLORS.blue },
    ] },
    { id: "dout", title: "Discriminator output", yRange: [0, 1], series: [
      { key: "d_real", label: "D(x)", color: COLORS.green },
      { key: "d_fake", label: "D(G(z))", color: COLORS.violet },
    ] },
  ],
  classifier: [
    { id: "loss", title: "Loss", series: [
      { key: "loss", label: "train", color: COLORS.red },
      { key: "val_loss", label: "validation", color: COLORS.orange, markers: true },
    ] },
    { id: "acc", title: "Accuracy", yRange: [0, 1], series: [
      { key: "accuracy", label: "train", color: COLORS.blue },
      { key: "val_accuracy", label: "validation", color: COLORS.green, markers: true },
    ] },
  ],
};
const EXTRA_COLORS = [COLORS.teal, COLORS.pink, COLORS.orange, COLORS.gray];

// ---------------------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, error, detail) {
    super(detail);
    this.status = status;
    this.error = error;
  }
  toString() { return `${this.error}: ${this.message}`; }
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    setConnection(false);
    throw new ApiError(0, "unreachable", "cannot reach the ModelKiln API");
  }
  setConnection(true);
  if (!response.ok) {
    let body = {};
    try { body = await response.json(); } catch { /* not JSON */ }
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? response.statusText);
    throw new ApiError(response.status, body.error ?? "http_error", detail);
  }
  if (response.status === 204) return null;
  return response.json();
}

function setConnection(ok) {
  const el = $("#conn");
  el.textContent = ok ? "connected" : "API unreachable";
  el.className = "conn " + (ok ? "ok" : "down");
}

// ---------------------------------------------------------------------------- helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children) node.append(child);
  return node;
}

function parseTime(value) {
  if (!value) return null;
  const hasZone = /[zZ]|[+-]\d\d:?\d\d$/.test(value);
  const t = Date.parse(hasZone ? value : value + "Z");
  return Number.isNaN(t) ? null : t;
}

function duration(ms) {
  if (ms == null || !Number.isFinite(ms)) return "–";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d`;
}

function age(value) {
  const t = parseTime(value);
  if (t == null) return "–";
  const s = Math.max(0, (Date.now() - t) / 1000);
  if (s < 60) return `${Math.floor(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

function fmt(v) {
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : v.toPrecision(4);
}

function badge(status) {
  return el("span", { class: `badge ${status}`, text: status });
}

function jobProgress(job) {
  if (job.status === "succeeded") return 1;
  if (typeof job.progress === "number") return job.progress;
  return job.total_steps ? job.step / job.total_steps : 0;
}

// The numbers of a metrics event, whatever envelope the stream uses.
function eventMetrics(d) {
  const m = d && typeof d === "object" ? (d.metrics ?? d.data ?? d) : {};
  const out = {};
  for (const [k, v] of Object.entries(m)) {
    if (typeof v === "number" && !["seq", "step", "epoch", "total_steps"].includes(k)) out[k] = v;
  }
  return out;
}

// ---------------------------------------------------------------------------- chart

function niceStep(range, count) {
  const raw = range / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

function ticks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const step = niceStep(hi - lo, count);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function tickLabel(v) {
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(1) : String(+v.toPrecision(6));
}

class LineChart {
  constructor(def) {
    this.def = def;
    this.series = new Map(def.series.map((s) => [s.key, { ...s, xs: [], ys: [] }]));
    this.points = 0;
    this.pending = false;
    this.legend = el("div", { class: "legend" });
    this.canvas = el("canvas");
    this.root = el("div", { class: "chart", "data-chart": def.id, "data-points": "0" },
      el("div", { class: "chart-head" }, el("span", { class: "chart-title" }, def.title, el("span", { class: "muted small", text: " by step" })), this.legend),
      this.canvas);
    this.renderLegend();
    new ResizeObserver(() => this.schedule()).observe(this.canvas);
  }

  has(key) { return this.series.has(key); }

  addSeries(s) {
    this.series.set(s.key, { ...s, xs: [], ys: [] });
    this.renderLegend();
  }

  renderLegend() {
    this.legend.replaceChildren(...[...this.series.values()].map((s) => {
      const last = s.ys.length ? ` ${fmt(s.ys[s.ys.length - 1])}` : "";
      return el("span", {}, el("i", { style: `background:${s.color}` }), `${s.label}${last}`);
    }));
  }

  push(key, x, y) {
    const s = this.series.get(key);
    if (!s || !Number.isFinite(y) || !Number.isFinite(x)) return;
    s.xs.push(x);
    s.ys.push(y);
    this.points += 1;
    this.root.dataset.points = String(this.points);
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); this.renderLegend(); });
  }

  draw() {
    const canvas = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const pad = { l: 52, r: 12, t: 8, b: 24 };
    const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;

    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const s of this.series.values()) {
      for (let i = 0; i < s.xs.length; i++) {
        x0 = Math.min(x0, s.xs[i]); x1 = Math.max(x1, s.xs[i]);
        y0 = Math.min(y0, s.ys[i]); y1 = Math.max(y1, s.ys[i]);
      }
    }
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#9aa0a6";
    if (x0 === Infinity) {
      ctx.textAlign = "center";
      ctx.fillText("waiting for data…", pad.l + pw / 2, pad.t + ph / 2);
      return;
    }
    if (this.def.yRange) {
      y0 = Math.min(y0, this.def.yRange[0]);
      y1 = Math.max(y1, this.def.yRange[1]);
    }
    if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
    const ym = (y1 - y0) * 0.05;
    if (!this.def.yRange) { y0 -= ym; y1 += ym; }
    if (x1 === x0) x1 = x0 + 1;
    const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * pw;
    const Y = (y) => pad.t + (1 - (y - y0) / (y1 - y0)) * ph;

    // Grid and axes.
    ctx.strokeStyle = "#eceff3";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const v of ticks(y0, y1, 5)) {
      const y = Math.round(Y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(pad.l + pw, y); ctx.stroke();
      ctx.fillText(tickLabel(v), pad.l - 6, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const v of ticks(x0, x1, Math.max(2, Math.floor(pw / 80)))) {
      const x = Math.round(X(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, pad.t); ctx.lineTo(x, pad.t + ph); ctx.stroke();
      ctx.fillText(tickLabel(v), x, pad.t + ph + 6);
    }

    // Series: many points are reduced to one min/max segment per pixel column.
    ctx.save();
    ctx.beginPath(); ctx.rect(pad.l, pad.t - 2, pw, ph + 4); ctx.clip();
    for (const s of this.series.values()) {
      if (!s.xs.length) continue;
      ctx.strokeStyle = s.color;
      ctx.fillStyle = s.color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      if (s.xs.length > pw * 2) {
        let col = -1, lo = 0, hi = 0, first = true;
        const flush = () => {
          if (col < 0) return;
          if (first) { ctx.moveTo(col, Y(lo)); first = false; } else ctx.lineTo(col, Y(lo));
          ctx.lineTo(col, Y(hi));
        };
        for (let i = 0; i < s.xs.length; i++) {
          const c = Math.round(X(s.xs[i]));
          if (c !== col) { flush(); col = c; lo = hi = s.ys[i]; }
          else { lo = Math.min(lo, s.ys[i]); hi = Math.max(hi, s.ys[i]); }
        }
        flush();
      } else {
        s.xs.forEach((x, i) => (i ? ctx.lineTo(X(x), Y(s.ys[i])) : ctx.moveTo(X(x), Y(s.ys[i]))));
      }
      ctx.stroke();
      if (s.markers) {
        s.xs.forEach((x, i) => { ctx.beginPath(); ctx.arc(X(x), Y(s.ys[i]), 2.5, 0, 2 * Math.PI); ctx.fill(); });
      }
    }
    ctx.restore();
  }
}

// ---------------------------------------------------------------------------- submit form

const form = {
  specs: null,
  datasets: [],
  model: "gan",
};

function suitability(model, ds) {
  // Mirrors the API's own check (app/catalog.py) as a hint; the API has the last word.
  if (!ds.available) return ds.detail || "unavailable";
  if (!ds.kind) return null;
  if (model === "neuron") {
    if (!["tabular", "points"].includes(ds.kind)) return "the neuron needs tabular or 2-D data";
    if (ds.num_classes != null && ds.num_classes !== 2) return "the neuron needs 2 classes";
  }
  if (model === "cnn" && ds.kind !== "image") return "the cnn needs images";
  return null;
}

function fieldInput(f) {
  const title = f.description || "";
  if (f.type === "boolean") {
    return el("label", { class: "check", title },
      el("input", { type: "checkbox", name: f.name, checked: !!f.default }), f.name);
  }
  if (f.type === "choice") {
    const select = el("select", { name: f.name });
    for (const c of f.choices) select.append(el("option", { value: c, text: c, selected: c === f.default }));
    return el("label", { title }, f.name, select);
  }
  const attrs = { type: "number", name: f.name, value: String(f.default), step: f.type === "integer" ? "1" : "any", required: true };
  if (f.minimum != null && !f.exclusive_minimum) attrs.min = String(f.minimum);
  if (f.maximum != null && !f.exclusive_maximum) attrs.max = String(f.maximum);
  return el("label", { title }, f.name, el("input", attrs));
}

function renderForm() {
  const spec = form.specs.models.find((m) => m.model === form.model);
  $("#model-tabs").replaceChildren(...form.specs.models.map((m) =>
    el("button", { type: "button", role: "tab", class: m.model === form.model ? "active" : "", "data-model": m.model, text: m.model,
      onclick: () => { form.model = m.model; renderForm(); } })));
  $("#model-desc").textContent = spec.description;
  const main = ["epochs", "batch_size", "lr"];
  $("#main-fields").replaceChildren(...spec.fields.filter((f) => main.includes(f.name)).map(fieldInput));
  const more = spec.fields.filter((f) => !main.includes(f.name));
  $("#more-fields").replaceChildren(...more.map(fieldInput));
  $("#more-fields-box").hidden = more.length === 0;

  const select = $("#dataset-select");
  const previous = select.value;
  select.replaceChildren();
  for (const ds of form.datasets) {
    const why = suitability(form.model, ds);
    const label = ds.source === "upload" ? `${ds.name} (upload ${ds.id})` : ds.name;
    select.append(el("option", { value: JSON.stringify(ds.ref), text: why ? `${label} — ${why}` : label, disabled: !!why }));
  }
  const wanted = [previous, JSON.stringify({ name: spec.dataset })];
  for (const value of wanted) {
    const opt = [...select.options].find((o) => o.value === value && !o.disabled);
    if (opt) { select.value = value; break; }
  }
  $("#form-error").hidden = true;
}

function readForm() {
  const spec = form.specs.models.find((m) => m.model === form.model);
  const f = $("#submit-form");
  const hyperparams = {};
  for (const field of spec.fields) {
    const input = f.elements[field.name];
    if (field.type === "boolean") hyperparams[field.name] = input.checked;
    else if (field.type === "choice") hyperparams[field.name] = input.value;
    else {
      const v = field.type === "integer" ? parseInt(input.value, 10) : parseFloat(input.value);
      if (!Number.isFinite(v)) throw new Error(`${field.name} must be a number`);
      hyperparams[field.name] = v;
    }
  }
  const body = {
    model: form.model,
    dataset: JSON.parse(f.elements.dataset.value || "{}"),
    hyperparams,
    seed: parseInt(f.elements.seed.value || "0", 10),
    device: f.elements.device.value,
  };
  const name = f.elements.name.value.trim();
  if (name) body.name = name;
  return body;
}

async function submitJob(event) {
  event.preventDefault();
  const error = $("#form-error");
  error.hidden = true;
  const button = $("#submit-btn");
  button.disabled = true;
  try {
    const body = readForm();
    const job = await api("/v1/jobs", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    location.hash = `#/jobs/${job.id}`;
    refreshJobs();
  } catch (err) {
    error.textContent = err instanceof ApiError ? err.toString() : String(err.message || err);
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

async function loadForm() {
  const [specs, datasets] = await Promise.all([api("/dashboard/specs.json"), api("/v1/datasets")]);
  form.specs = specs;
  form.datasets = Array.isArray(datasets) ? datasets : datasets.data;
  $("#device-select").replaceChildren(...specs.devices.map((d) => el("option", { value: d, text: d })));
  renderForm();
}

// ---------------------------------------------------------------------------- job list

let jobsTimer = null;

async function refreshJobs() {
  clearTimeout(jobsTimer);
  try {
    const page = await api("/v1/jobs?limit=50");
    renderJobs(page.data ?? page);
  } catch { /* shown by the connection badge */ }
  jobsTimer = setTimeout(refreshJobs, POLL_MS);
}

function renderJobs(jobs) {
  const tbody = $("#jobs-table tbody");
  const selected = view?.id;
  tbody.replaceChildren(...jobs.map((job) => {
    const pct = Math.round(jobProgress(job) * 100);
    return el("tr", { "data-job": job.id, class: job.id === selected ? "selected" : "",
      onclick: () => { location.hash = `#/jobs/${job.id}`; } },
      el("td", { title: job.name ? `${job.name} (${job.id})` : job.id },
        el("span", { class: "jid", text: job.id.slice(0, 8) }),
        job.name ? el("div", { class: "jname", text: job.name }) : ""),
      el("td", { title: job.model, text: job.model }),
      el("td", { title: job.dataset, text: job.dataset }),
      el("td", { title: job.status }, badge(job.status)),
      el("td", { title: `step ${job.step}/${job.total_steps} · epoch ${job.epoch}` },
        el("span", { class: "mini" }, el("div", { style: `width:${pct}%` })), ` ${pct}%`),
      el("td", { title: job.created_at, text: age(job.created_at) }));
  }));
  $("#jobs-empty").hidden = jobs.length > 0;
  $("#jobs-count").textContent = jobs.length ? `(${jobs.length})` : "";
  if (view && !view.closed) {
    const current = jobs.find((j) => j.id === view.id);
    // The stream may already know better (a final status): never step back from it.
    if (current && !(TERMINAL.has(view.job?.status) && !TERMINAL.has(current.status))) updateJob(current);
  }
}

// ---------------------------------------------------------------------------- job page

let view = null; // the open job: { id, job, charts, es, lastSeq, ... }

function closeView() {
  if (!view) return;
  view.closed = true;
  view.es?.close();
  clearTimeout(view.retryTimer);
  const images = view.images;
  if (images) for (const t of [images.timer, images.settle, images.retry]) clearTimeout(t);
  view = null;
}

function showPlaceholder() {
  closeView();
  $("#job-view").hidden = true;
  $("#placeholder").hidden = false;
}

async function openJob(id) {
  closeView();
  const v = { id, job: null, charts: [], chartByKey: new Map(), es: null, lastSeq: 0, epoch: 0,
    step: 0, sampleSeed: 7, sampleVersion: null, closed: false, images: null };
  view = v;
  $("#placeholder").hidden = true;
  $("#job-view").hidden = true;
  let job;
  try {
    job = await api(`/v1/jobs/${id}`);
  } catch (err) {
    if (view !== v) return;
    $("#placeholder").hidden = false;
    $("#placeholder").replaceChildren(el("h2", { text: "Job not found" }), el("p", { class: "muted", text: String(err) }));
    return;
  }
  if (view !== v) return;
  v.job = job;
  v.images = newImageState(job);
  $("#job-view").hidden = false;
  $("#job-error").hidden = true;
  $("#predict-out").hidden = true;

  const defs = CHARTS[job.model === "gan" ? "gan" : "classifier"];
  v.charts = defs.map((d) => new LineChart(d));
  for (const chart of v.charts) for (const key of chart.series.keys()) v.chartByKey.set(key, chart);
  $("#charts").replaceChildren(...v.charts.map((c) => c.root));

  const isGan = job.model === "gan";
  $("#gan-box").hidden = !isGan;
  $("#predict-box").hidden = isGan;
  for (const img of [$("#samples-img"), $("#progress-img")]) { img.removeAttribute("src"); img.classList.remove("broken"); }
  $("#samples-note").textContent = "no checkpoint yet";
  $("#progress-note").textContent = "after the first epoch";
  $("#samples-note").hidden = false;
  $("#progress-note").hidden = false;

  updateJob(job);
  follow(v);
  document.querySelectorAll("#jobs-table tr[data-job]").forEach((tr) => tr.classList.toggle("selected", tr.dataset.job === id));
}

function updateJob(job) {
  const v = view;
  if (!v || v.closed || job.id !== v.id) return;
  v.job = job;
  const title = `${job.model.toUpperCase()} on ${job.dataset}`;
  $("#job-title").replaceChildren(title + " ", badge(job.status));
  $("#job-sub").textContent = `${job.name ? job.name + " · " : ""}${job.id} · created ${age(job.created_at)} ago` +
    (job.device ? ` · ${job.device}` : "") + (job.worker ? ` · ${job.worker}` : "");
  const step = Math.max(v.step, job.step || 0);
  const total = job.total_steps || 0;
  const frac = job.status === "succeeded" ? 1 : total ? step / total : 0;
  $("#progress-fill").style.width = `${(frac * 100).toFixed(1)}%`;
  const epochs = job.spec?.hyperparams?.epochs;
  const started = parseTime(job.started_at);
  const finished = parseTime(job.finished_at);
  const elapsed = started ? (finished ?? Date.now()) - started : null;
  const eta = elapsed && step && total && !TERMINAL.has(job.status) ? (elapsed * (total - step)) / step : null;
  $("#progress-text").textContent = `step ${step}/${total || "?"} · epoch ${Math.max(v.epoch, job.epoch || 0)}${epochs ? "/" + epochs : ""}` +
    ` · elapsed ${duration(elapsed)}` + (eta != null ? ` · ETA ${duration(eta)}` : "");

  const stats = [];
  for (const [k, val] of Object.entries(job.metrics || {})) stats.push(el("span", {}, `${k} `, el("b", { text: fmt(val) })));
  for (const [k, val] of Object.entries(job.best_metrics || {})) stats.push(el("span", { class: "muted" }, `best ${k} `, el("b", { text: fmt(val) })));
  const hp = job.spec?.hyperparams || {};
  stats.push(el("span", { class: "muted", text: Object.entries(hp).map(([k, x]) => `${k}=${x}`).join(" ") }));
  $("#job-stats").replaceChildren(...stats);
  if (job.error) { $("#job-error").textContent = job.error; $("#job-error").hidden = false; }
  $("#cancel-btn").disabled = TERMINAL.has(job.status) || job.cancel_requested;
  $("#delete-btn").disabled = !TERMINAL.has(job.status);
}

function setStreamState(text, cls) {
  const s = $("#stream-state");
  s.textContent = text;
  s.className = `stream-state ${cls || ""}`;
}

// Follow the job's event stream. The browser's EventSource reconnects by itself and sends
// Last-Event-ID; should it give up (a non-200 answer while the server restarts), a new one is
// opened with ?after=<last seq> and anything already seen is skipped by its seq.
function follow(v) {
  if (v.closed) return;
  const url = `/v1/jobs/${v.id}/events` + (v.lastSeq ? `?after=${v.lastSeq}` : "");
  const es = new EventSource(url);
  v.es = es;
  const fresh = (e) => {
    const seq = parseInt(e.lastEventId, 10);
    if (Number.isFinite(seq)) {
      if (seq <= v.lastSeq) return false;
      v.lastSeq = seq;
    }
    settling(v);
    return true;
  };
  const parse = (e) => { try { return JSON.parse(e.data); } catch { return {}; } };
  es.onopen = () => setStreamState("live", "live");
  es.addEventListener("metrics", (e) => { if (fresh(e)) onMetrics(v, parse(e)); });
  es.addEventListener("status", (e) => { if (fresh(e)) onStatus(v, parse(e)); });
  for (const kind of ["checkpoint", "progress_image"]) {
    es.addEventListener(kind, (e) => { if (fresh(e)) imagesChanged(v, parse(e).step); });
  }
  es.addEventListener("end", (e) => {
    fresh(e);
    es.close();
    setStreamState("finished", "");
    onStatus(v, parse(e));
    refreshJobs();
    caughtUp(v);
  });
  es.onerror = () => {
    if (v.closed || es !== v.es) return;
    setStreamState("reconnecting…", "retry");
    if (es.readyState === EventSource.CLOSED) {
      clearTimeout(v.retryTimer);
      v.retryTimer = setTimeout(() => follow(v), 2000);
    }
  };
}

function onMetrics(v, d) {
  if (v.closed) return;
  const step = d.step ?? v.step;
  const epoch = d.epoch ?? v.epoch;
  const metrics = eventMetrics(d);
  for (const [key, value] of Object.entries(metrics)) {
    let chart = v.chartByKey.get(key);
    if (!chart) chart = extraChart(v, key);
    chart.push(key, step, value);
  }
  const newEpoch = epoch > v.epoch;
  v.step = Math.max(v.step, step);
  v.epoch = Math.max(v.epoch, epoch);
  if (d.total_steps && v.job) v.job.total_steps = d.total_steps;
  if (v.job) {
    v.job.metrics = { ...(v.job.metrics || {}), ...metrics };
    if (v.job.status === "queued") v.job.status = "running";
    scheduleJobRender(v);
  }
  if (newEpoch) imagesChanged(v, step);
  else if (step > (v.images?.replayUntil ?? 0)) caughtUp(v);
}

function extraChart(v, key) {
  // A metric the model kind's layout does not know: give it a chart of its own.
  let chart = v.charts.find((c) => c.def.id === "other");
  const color = EXTRA_COLORS[(chart ? chart.series.size : 0) % EXTRA_COLORS.length];
  if (!chart) {
    chart = new LineChart({ id: "other", title: "Other metrics", series: [] });
    v.charts.push(chart);
    $("#charts").append(chart.root);
  }
  chart.addSeries({ key, label: key, color });
  v.chartByKey.set(key, chart);
  return chart;
}

function onStatus(v, d) {
  // A status event carries {"status": ...} in its data; the final "end" event carries it flat.
  if (d && d.data && typeof d.data === "object" && d.data.status) d = d.data;
  if (v.closed || !d || !d.status || !v.job) return;
  v.job.status = d.status;
  if (d.error) v.job.error = d.error;
  scheduleJobRender(v);
  if (TERMINAL.has(d.status)) {
    api(`/v1/jobs/${v.id}`).then(updateJob).catch(() => {});
  }
}

function scheduleJobRender(v) {
  if (v.renderPending) return;
  v.renderPending = true;
  requestAnimationFrame(() => { v.renderPending = false; if (!v.closed) updateJob(v.job); });
}

// GAN images: the samples grid and the progress animation. Opening a job replays its whole
// history, hundreds of checkpoint / progress_image events in a second, so events only mark the
// images stale: nothing is loaded until the replay has caught up (an event past the step the
// job had when the page opened, the stream's end, or a lull of IMAGE_SETTLE_MS), and then at
// most one load is in flight and loads start at least IMAGE_GAP_MS apart. "New seed" skips the
// gap but still waits for a load in flight.
const IMAGE_GAP_MS = 2000;
const IMAGE_SETTLE_MS = 500;
const IMAGE_RETRY_MS = 3000;

function newImageState(job) {
  return { replayUntil: job.step || 0, live: false, stale: (job.step || 0) > 0, inFlight: 0,
    force: false, lastAt: 0, timer: null, settle: null, retry: null };
}

function imagesChanged(v, step) {
  if (v.closed || !v.images) return;
  v.images.stale = true;
  if ((step ?? 0) > v.images.replayUntil) caughtUp(v);
}

function settling(v) {
  const s = v.images;
  if (!s || s.live) return;
  clearTimeout(s.settle);
  s.settle = setTimeout(() => caughtUp(v), IMAGE_SETTLE_MS);
}

function caughtUp(v) {
  if (v.closed || !v.images) return;
  v.images.live = true;
  clearTimeout(v.images.settle);
  refreshImages(v, false);
}

function refreshImages(v, force) {
  const s = v.images;
  if (v.closed || !s || v.job?.model !== "gan") return;
  if (force) { s.force = true; s.stale = true; clearTimeout(s.timer); s.timer = null; }
  if (!s.stale || !(s.live || s.force) || s.inFlight || s.timer) return;
  const wait = s.force ? 0 : s.lastAt + IMAGE_GAP_MS - Date.now();
  if (wait > 0) {
    s.timer = setTimeout(() => { s.timer = null; refreshImages(v, false); }, wait);
    return;
  }
  s.stale = false;
  s.force = false;
  s.lastAt = Date.now();
  s.inFlight = 2;
  const version = `${v.step}-${s.lastAt}`;
  const done = (ok) => {
    s.inFlight -= 1;
    if (!ok && !TERMINAL.has(v.job?.status) && !s.retry) {
      // No checkpoint or progress frame yet: look again in a while.
      s.retry = setTimeout(() => { s.retry = null; s.stale = true; refreshImages(v, false); }, IMAGE_RETRY_MS);
    }
    if (!s.inFlight) refreshImages(v, false); // anything that arrived meanwhile
  };
  loadImage(v, $("#samples-img"), $("#samples-note"),
    `/v1/jobs/${v.id}/samples?n=64&nrow=8&seed=${v.sampleSeed}&format=png&v=${version}`, "no checkpoint yet", done);
  loadImage(v, $("#progress-img"), $("#progress-note"), `/v1/jobs/${v.id}/progress.gif?v=${version}`,
    "after the first epoch", done);
  $("#sample-caption").textContent = `seed ${v.sampleSeed} · step ${v.step}`;
}

function loadImage(v, img, note, src, waiting, done) {
  const probe = new Image();
  probe.onload = () => {
    if (v.closed || view !== v) return;
    img.src = src;
    img.classList.remove("broken");
    note.hidden = true;
    done(true);
  };
  probe.onerror = () => {
    if (v.closed || view !== v) return;
    if (!img.getAttribute("src")) { note.hidden = false; note.textContent = waiting; }
    done(false);
  };
  probe.src = src;
}

async function cancelJob() {
  if (!view) return;
  try {
    const job = await api(`/v1/jobs/${view.id}/cancel`, { method: "POST" });
    updateJob(job);
    refreshJobs();
  } catch (err) { showJobError(err); }
}

async function deleteJob() {
  if (!view) return;
  if (!confirm(`Delete job ${view.id} and its artifacts?`)) return;
  try {
    await api(`/v1/jobs/${view.id}`, { method: "DELETE" });
    location.hash = "#/";
    refreshJobs();
  } catch (err) { showJobError(err); }
}

function showJobError(err) {
  $("#job-error").textContent = String(err);
  $("#job-error").hidden = false;
}

async function predict(event) {
  event.preventDefault();
  if (!view) return;
  const f = event.target;
  const out = $("#predict-out");
  try {
    let result;
    if (f.elements.image.files.length) {
      const data = new FormData();
      data.append("file", f.elements.image.files[0]);
      result = await api(`/v1/jobs/${view.id}/predict`, { method: "POST", body: data });
    } else {
      const inputs = JSON.parse(f.elements.inputs.value || "[]");
      result = await api(`/v1/jobs/${view.id}/predict`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ inputs }),
      });
    }
    const lines = (result.predictions || []).map((p, i) =>
      `#${i}  ${p.label}  ` + (p.probabilities || []).map((x, j) => `${result.class_names?.[j] ?? j}:${x.toFixed(3)}`).join(" "));
    out.textContent = lines.length ? lines.join("\n") : JSON.stringify(result, null, 2);
  } catch (err) {
    out.textContent = String(err);
  }
  out.hidden = false;
}

// ---------------------------------------------------------------------------- routing

function route() {
  const m = location.hash.match(/^#\/jobs\/([A-Za-z0-9_-]+)/);
  if (m) {
    if (!view || view.id !== m[1]) openJob(m[1]);
  } else {
    showPlaceholder();
  }
}

async function main() {
  $("#submit-form").addEventListener("submit", submitJob);
  $("#cancel-btn").addEventListener("click", cancelJob);
  $("#delete-btn").addEventListener("click", deleteJob);
  $("#predict-form").addEventListener("submit", predict);
  $("#new-seed-btn").addEventListener("click", () => {
    if (!view) return;
    view.sampleSeed = Math.floor(Math.random() * 2 ** 31);
    refreshImages(view, true);
  });
  window.addEventListener("hashchange", route);
  setInterval(() => { if (view && !view.closed && view.job) updateJob(view.job); }, 1000);
  refreshJobs();
  route();
  for (;;) {
    try { await loadForm(); break; } catch (err) {
      $("#form-error").textContent = `could not load the form: ${err}`;
      $("#form-error").hidden = false;
      await new Promise((r) => setTimeout(r, 3000));
    }
  }
}

main();
