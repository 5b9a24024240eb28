// The scrimp dashboard: one request to /dashboard/api/overview per load or filter change draws every chart;
// a click on a chart lists the calls behind it from /dashboard/api/calls, a keyset-paginated page at a time.
// Names (tenants, features) come from callers: they are only ever set as text, never as HTML.
"use strict";

const COLORS = ["#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2", "#9ca3af"];
const KEY_STORE = "scrimpAdminKey";
const $ = (id) => document.getElementById(id);
Chart.defaults.animation = false;
Chart.defaults.maintainAspectRatio = false;
Chart.defaults.font.size = 11;

let data = null;
const charts = {};
let callsQuery = null;

// -- the admin key: typed once per tab, or passed as #key=... (a fragment never reaches the server) ---------------
(function keyFromFragment() {
  const m = location.hash.match(/key=([^&]+)/);
  if (m) {
    sessionStorage.setItem(KEY_STORE, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
})();

async function api(path, params) {
  const headers = {};
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers.authorization = "Bearer " + key;
  const res = await fetch(path + "?" + new URLSearchParams(params), { headers });
  if (res.status === 401 || res.status === 403) {
    $("keyform").style.display = "block";
    throw new Error("the admin key is needed");
  }
  const body = await res.json();
  if (!res.ok) throw new Error(body.error ? body.error.message : res.statusText);
  return body;
}

function filters() {
  return { since: $("f-since").value, tenant: $("f-tenant").value, feature: $("f-feature").value };
}

// -- formatting ---------------------------------------------------------------------------------------------------------
function usd(v) {
  if (v == null) return "–";
  const a = Math.abs(v);
  return (v < 0 ? "-$" : "$") + (a >= 100 ? a.toFixed(0) : a >= 1 ? a.toFixed(2) : a === 0 ? "0" : a.toPrecision(3));
}
const pct = (v) => v == null ? "–" : (100 * v).toFixed(1) + "%";
const count = (v) => v == null ? "–" : Math.round(v).toLocaleString("en");

function label(seconds) {
  const iso = new Date(seconds * 1000).toISOString();
  return data.span === "h" ? iso.slice(5, 13).replace("T", " ") + "h" : iso.slice(0, 10);
}

// -- charts ------------------------------------------------------------------------------------------------------------
function draw(id, config, hasData) {
  const panel = $(id).closest(".panel");
  panel.classList.toggle("nodata", !hasData);
  if (charts[id]) {
    charts[id].data = config.data;
    charts[id].options = config.options || {};
    charts[id].update("none");
  } else {
    charts[id] = new Chart($(id), config);
  }
}

function lines(datasets) {
  return datasets.map((d, i) => ({ borderColor: COLORS[i % COLORS.length], backgroundColor: COLORS[i % COLORS.length],
                                   pointRadius: 1.5, borderWidth: 1.5, spanGaps: true, ...d }));
}

function onClick(handler) {
  return (event, elements, chart) => {
    if (elements.length) handler(elements[0].datasetIndex, elements[0].index, chart);
  };
}

function bucketPeriod(i) {
  const step = data.span === "h" ? 3600 : 86400;
  return { since: String(data.buckets[i]), until: String(data.buckets[i] + step) };
}

function render() {
  const labels = data.buckets.map(label);
  const s = data.series, b = data.breakdowns, t = data.totals;
  const any = t.calls > 0;

  cards([["spend", usd(t.cost_usd)], ["saved", usd(t.saved_usd) + " (" + pct(t.baseline_usd ? t.saved_usd / t.baseline_usd : null) + ")"],
         ["calls", count(t.calls)], ["cost per successful call", usd(t.cost_per_success_usd)],
         ["errors + cancelled", pct(t.error_rate)],
         ["cache hits (exact + semantic)", pct(t.calls ? (t.exact_hits + t.semantic_hits) / t.calls : null)],
         ["latency p50 / p95", t.latency_p50_ms == null ? "–" : Math.round(t.latency_p50_ms) + " / " + Math.round(t.latency_p95_ms) + " ms"]]);

  draw("chart-spend", { type: "line", data: { labels, datasets: lines([
      { label: "spend", data: s.cost_usd }, { label: "saved", data: s.saved_usd }]) },
    options: { onClick: onClick((d, i) => showCalls({ ...bucketPeriod(i) }, "calls of " + labels[i])),
               scales: { y: { ticks: { callback: usd } } } } }, any);

  const dim = $("b-dim").value, metric = $("b-metric").value, st = data.stacked[dim];
  draw("chart-breakdown", { type: "bar", data: { labels, datasets: st.keys.map((k, i) => ({
      label: k, data: st[metric][i], backgroundColor: COLORS[i % COLORS.length] })) },
    options: { scales: { x: { stacked: true }, y: { stacked: true, ticks: { callback: usd } } },
               onClick: onClick((d, i) => {
                 const key = st.keys[d];
                 showCalls({ ...bucketPeriod(i), ...(key === "other" ? {} : { dim, key }) }, dim + " " + key + ", " + labels[i]);
               }) } }, st.keys.length > 0);

  const levers = b.lever || [];
  draw("chart-levers", { type: "bar", data: { labels: levers.map((r) => r.key), datasets: [
      { label: "net saving", data: levers.map((r) => r.lever_net_usd), backgroundColor: COLORS[1] },
      { label: "cost records", data: levers.map((r) => r.extra_cost_usd), backgroundColor: COLORS[3] }] },
    options: { scales: { y: { ticks: { callback: usd } } },
               onClick: onClick((d, i) => showCalls({ dim: "lever", key: levers[i].key }, "calls lever " + levers[i].key + " saved on")) } },
    levers.length > 0);

  const feats = (b.feature || []).slice(0, 10);
  draw("chart-features", { type: "bar", data: { labels: feats.map((r) => r.key), datasets: [
      { label: "spend", data: feats.map((r) => r.cost_usd), backgroundColor: COLORS[0] },
      { label: "saved", data: feats.map((r) => r.saved_usd), backgroundColor: COLORS[1] }] },
    options: { indexAxis: "y", scales: { x: { ticks: { callback: usd } } },
               plugins: { tooltip: { callbacks: { afterBody: (items) => "cost per successful call " + usd(feats[items[0].dataIndex].cost_per_success_usd) } } },
               onClick: onClick((d, i) => showCalls({ dim: "feature", key: feats[i].key }, "feature " + feats[i].key)) } },
    feats.length > 0);

  draw("chart-cache", { type: "line", data: { labels, datasets: lines([
      { label: "exact", data: s.exact_hit_rate }, { label: "semantic", data: s.semantic_hit_rate },
      { label: "provider prompt cache", data: s.prompt_cache_read_share }]) },
    options: { scales: { y: { min: 0, max: 1, ticks: { callback: pct } } },
               onClick: onClick((d, i) => showCalls({ ...bucketPeriod(i), ...(d < 2 ? { dim: "cache", key: d ? "semantic" : "exact" } : {}) },
                                                       (d < 2 ? ["exact", "semantic"][d] + " hits, " : "calls of ") + labels[i])) } }, any);

  const routes = b.route || [];
  draw("chart-routing", { type: "doughnut", data: { labels: routes.map((r) => r.key), datasets: [
      { data: routes.map((r) => r.calls), backgroundColor: routes.map((r, i) => COLORS[i % COLORS.length]) }] },
    options: { plugins: { legend: { position: "right" } },
               onClick: onClick((d, i) => showCalls({ dim: "route", key: routes[i].key }, "route " + routes[i].key)) } },
    routes.length > 0);

  const shadow = b.shadow || [];
  draw("chart-shadow", { type: "bar", data: { labels: shadow.map((r) => r.key + " (" + count(r.records) + " runs)"), datasets: [
      { label: "agreement", data: shadow.map((r) => r.shadow_agreement), backgroundColor: COLORS[4] }] },
    options: { scales: { y: { min: 0, max: 1, ticks: { callback: pct } } },
               onClick: onClick((d, i) => showCalls({ dim: "shadow", key: shadow[i].key }, "calls of route " + shadow[i].key)) } },
    shadow.length > 0);

  const budgets = (b.event || []).filter((r) => r.key.startsWith("budget_"));
  draw("chart-budgets", { type: "bar", data: { labels: budgets.map((r) => r.key.replace("budget_", "")), datasets: [
      { label: "times", data: budgets.map((r) => r.records), backgroundColor: COLORS[2] }] }, options: {} },
    budgets.length > 0);

  draw("chart-errors", { type: "bar", data: { labels, datasets: [
      { label: "error", data: s.errors, backgroundColor: COLORS[3] },
      { label: "client cancelled", data: s.cancelled, backgroundColor: COLORS[2] }] },
    options: { scales: { x: { stacked: true }, y: { stacked: true } },
               onClick: onClick((d, i) => showCalls({ ...bucketPeriod(i), dim: "status", key: d ? "client_cancelled" : "error" },
                                                       (d ? "cancelled" : "failed") + " calls, " + labels[i])) } }, any);

  draw("chart-latency", { type: "line", data: { labels, datasets: lines([
      { label: "p50", data: s.latency_p50_ms }, { label: "p95", data: s.latency_p95_ms }]) },
    options: { onClick: onClick((d, i) => showCalls({ ...bucketPeriod(i) }, "calls of " + labels[i])) } }, any);

  promptsTable();
}

// -- top prompts by spend (the request log's prompts by template) ---------------------------------------------------
function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function promptsTable() {
  const p = data.prompts;
  $("prompts-table").hidden = !p.rows.length;
  $("prompts-rows").replaceChildren(...p.rows.map((r) => {
    const tr = document.createElement("tr");
    const link = document.createElement("a");
    link.href = "#calls";
    link.textContent = "calls";
    link.addEventListener("click", (e) => {
      e.preventDefault();
      showCalls({ dim: "template", key: r.template, feature: r.feature }, "prompt template \u201c" + r.template + "\u201d (" + r.feature + ")");
    });
    const last = document.createElement("td");
    last.append(link);
    tr.append(cell(r.feature), cell(r.template || "(no text)", "tmpl"), cell(count(r.calls), "num"),
              cell(usd(r.cost_usd), "num"), cell(pct(r.share), "num"), last);
    return tr;
  }));
  const features = p.unlogged_features.join(", ");
  const hint = $("prompts-hint");
  hint.hidden = p.rows.length > 0;
  if (!p.logged) {
    hint.textContent = features ? "The request log is off. Turn on the request log for these features: " + features
      + " (add \u201c- request_log: {features: [" + features + "]}\u201d after the ledger in stages:; docs/request-log.md)."
      : "The request log is off: add a request_log stage to see prompts (docs/request-log.md).";
  } else if (!p.rows.length) {
    hint.textContent = "No logged call in this view." + (features ? " Turn on the request log for these features: " + features + "." : "");
  }
  const notes = [];
  if (p.rows.length) {
    notes.push("logged calls read: " + count(p.calls) + ", " + usd(p.cost_usd) + " of " + usd(data.totals.cost_usd) + " spend");
    if (features) notes.push((p.capped ? "no logged call read: " : "not logged: ") + features
      + " (turn on the request log for these features)");
  }
  if (p.capped) notes.push("cap hit: only the newest " + count(p.scan_cap) + " logged calls were read, from "
    + new Date(p.covered_since * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC on");
  $("prompts-note").textContent = notes.join(" · ");
}

function cards(items) {
  const box = $("cards");
  box.replaceChildren(...items.map(([name, value]) => {
    const div = document.createElement("div");
    div.className = "card";
    const b = document.createElement("b");
    b.textContent = value;
    const span = document.createElement("span");
    span.textContent = name;
    div.append(b, span);
    return div;
  }));
}

function options(select, values, current) {
  select.replaceChildren(new Option("all", ""), ...values.map((v) => new Option(v, v)));
  if (current && !values.includes(current)) select.append(new Option(current, current));
  select.value = current || "";
}

// -- the calls behind a chart ----------------------------------------------------------------------------------------
async function showCalls(extra, what) {
  callsQuery = { ...filters(), ...extra, limit: "50" };
  $("calls-what").textContent = what;
  $("calls-rows").replaceChildren();
  await moreCalls();
  $("calls").scrollIntoView({ block: "nearest" });
}

async function moreCalls() {
  const page = await api("/dashboard/api/calls", callsQuery);
  const cells = (r) => [new Date(r.ts * 1000).toISOString().slice(0, 19).replace("T", " "), r.request_id, r.tenant,
    r.feature || "-", r.served_model || r.requested_model, r.cache, r.route || "", r.status, usd(r.cost_usd),
    usd(r.saved_usd), r.saving_stage || "", count(r.input_tokens) + " / " + count(r.output_tokens),
    r.latency_ms == null ? "" : Math.round(r.latency_ms)];
  for (const r of page.calls) {
    const tr = document.createElement("tr");
    cells(r).forEach((v, i) => {
      const td = document.createElement("td");
      td.textContent = v;
      if (i >= 8 && i !== 10) td.className = "num";
      tr.append(td);
    });
    $("calls-rows").append(tr);
  }
  $("calls-more").hidden = !page.next;
  callsQuery.after = page.next || "";
}

// -- loading ------------------------------------------------------------------------------------------------------------
async function load() {
  const f = filters();
  history.replaceState(null, "", "?" + new URLSearchParams(f));
  $("status").textContent = "loading…";
  const started = performance.now();
  try {
    data = await api("/dashboard/api/overview", f);
  } catch (err) {
    $("status").textContent = err.message;
    return;
  }
  options($("f-tenant"), data.choices.tenant, f.tenant);
  options($("f-feature"), data.choices.feature, f.feature);
  render();
  $("status").textContent = count(data.totals.calls) + " calls · " + Math.round(performance.now() - started) + " ms"
    + (data.truncated ? " · period cut: too many rows, choose a shorter one" : "");
  document.body.dataset.loads = String(Number(document.body.dataset.loads || 0) + 1);
}

(function init() {
  const q = new URLSearchParams(location.search);
  if (q.get("since")) $("f-since").value = q.get("since");
  options($("f-tenant"), [], q.get("tenant"));
  options($("f-feature"), [], q.get("feature"));
  for (const id of ["f-since", "f-tenant", "f-feature"]) $(id).addEventListener("change", load);
  for (const id of ["b-dim", "b-metric"]) $(id).addEventListener("change", () => data && render());
  $("calls-more").addEventListener("click", moreCalls);
  $("keyform").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY_STORE, $("key").value);
    $("keyform").style.display = "none";
    load();
  });
  load();
})();
