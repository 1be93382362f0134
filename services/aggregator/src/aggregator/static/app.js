// Operations dashboard: plain JS, inline SVG, no external resources (works offline); the region
// map is static/map.js (window.SmartgridMap), built from services/aggregator/web.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const state = { page: 1, pageSize: 15, regions: [], statuses: [], region: "", regionRows: [] };

const $ = (id) => document.getElementById(id);
const fmt = (value, digits = 2) =>
  value === null || value === undefined ? "–" : Number(value).toLocaleString("en-US", { maximumFractionDigits: digits });
const fmtTime = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "–");

function svgEl(tag, attrs, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  if (text !== undefined) el.textContent = text;
  return el;
}

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

// A filled line chart of points[yKey] over their index, with max and time labels. Points from
// index openFrom on are still filling (their totals only grow): drawn dashed and hollow, apart
// from the filled area, so a partial newest bucket does not read as a drop in consumption.
function drawSeries(svg, points, timeKey, yKey, color, timeLabel, openFrom = -1) {
  svg.replaceChildren();
  const width = 800, height = 200, left = 50, bottom = 20, top = 10;
  if (!points.length) {
    svg.appendChild(svgEl("text", { x: width / 2, y: height / 2, class: "axis-label", "text-anchor": "middle" }, "no data yet"));
    return;
  }
  const values = points.map((p) => p[yKey] || 0);
  const max = Math.max(...values) || 1;
  const step = (width - left) / Math.max(1, points.length - 1);
  const y = (v) => top + (height - bottom - top) * (1 - v / max);
  const coords = values.map((v, i) => `${(left + i * step).toFixed(1)},${y(v).toFixed(1)}`);
  const complete = openFrom < 0 ? points.length : openFrom;
  svg.appendChild(svgEl("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" }));
  svg.appendChild(svgEl("line", { x1: left, y1: top, x2: left, y2: height - bottom, class: "axis" }));
  if (complete > 0) {
    const solid = coords.slice(0, complete);
    svg.appendChild(svgEl("polygon", {
      points: `${left},${height - bottom} ${solid.join(" ")} ${left + (complete - 1) * step},${height - bottom}`,
      fill: color, "fill-opacity": 0.18,
    }));
    svg.appendChild(svgEl("polyline", { points: solid.join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
  }
  if (complete < points.length) {
    // From the last complete point through the open ones.
    const dashed = coords.slice(Math.max(0, complete - 1));
    svg.appendChild(svgEl("polyline", { points: dashed.join(" "), fill: "none", stroke: color, "stroke-width": 2, class: "open-line" }));
    for (let i = complete; i < points.length; i++) {
      const marker = svgEl("circle", {
        cx: (left + i * step).toFixed(1), cy: y(values[i]).toFixed(1), r: 4, stroke: color,
        class: "open-point", "data-time": points[i][timeKey],
      });
      marker.appendChild(svgEl("title", {}, `${timeLabel(points[i][timeKey])}: still filling (${fmt(values[i], 3)} so far)`));
      svg.appendChild(marker);
    }
  }
  svg.appendChild(svgEl("text", { x: left - 4, y: top + 10, class: "axis-label", "text-anchor": "end" }, fmt(max, 1)));
  svg.appendChild(svgEl("text", { x: left - 4, y: height - bottom, class: "axis-label", "text-anchor": "end" }, "0"));
  svg.appendChild(svgEl("text", { x: left, y: height - 4, class: "axis-label" }, timeLabel(points[0][timeKey])));
  svg.appendChild(svgEl("text", { x: width, y: height - 4, class: "axis-label", "text-anchor": "end" },
    timeLabel(points[points.length - 1][timeKey])));
}

// Index of the first point after the newest complete one (-1: all complete). Servers without
// the "complete" field report every point as complete.
function openIndex(points, timeKey, complete) {
  if (complete === undefined || complete === null) return -1;
  return points.findIndex((p) => p[timeKey] > complete);
}

const clock = (seconds) => new Date(seconds * 1000).toISOString().slice(11, 19);

// The headline is the newest COMPLETE second: the newest folded one is still being filled by the
// partitions, and showing it would look like a drop in consumption every second.
function renderLive(live) {
  const openFrom = openIndex(live.points, "second", live.complete);
  drawSeries($("live-chart"), live.points, "second", "total_kwh", "#3fb6ff", clock, openFrom);
  const shown = openFrom < 0 ? live.points[live.points.length - 1] : live.points[openFrom - 1];
  $("kwh-now").textContent = shown ? fmt(shown.total_kwh, 3) : "–";
  $("readings-now").textContent = shown ? fmt(shown.reading_count, 0) : "–";
  const filling = openFrom < 0 ? "" : ` · ${clock(live.points[openFrom].second)} filling`;
  $("kwh-at").textContent = shown ? `at ${clock(shown.second)}${filling}` : "";
  $("readings-at").textContent = $("kwh-at").textContent;
  $("latest-time").textContent = live.end ? fmtTime(live.end * 1000) : "–";
}

function renderStatus(status) {
  $("meters-total").textContent = fmt(status.total, 0);
  for (const name of ["ok", "fault", "offline", "clock_skew"]) $(`status-${name}`).textContent = fmt(status.counts[name] || 0, 0);
  const names = Object.keys(status.counts).filter((name) => name !== "ok");
  if (names.join() !== state.statuses.join()) {
    state.statuses = names;
    fillSelect($("filter-status"), names);
  }
}

function fillSelect(select, names) {
  const chosen = select.value;
  select.replaceChildren(new Option("all", ""));
  for (const name of names) select.appendChild(new Option(name, name));
  select.value = names.includes(chosen) ? chosen : "";
}

async function loadTrend() {
  const trend = await getJson("/api/trend");
  drawSeries($("trend-chart"), trend.points, "minute", "total_kwh", "#a78bfa", (s) => clock(s).slice(0, 5),
    openIndex(trend.points, "minute", trend.complete));
}

// The region filtering the alerts: the URL's #region=<name> (a link or a reload keeps it), set by a
// click on the map, a row of the regions table or the region select; cleared by a second click,
// the "clear" control or "all".
function regionFromHash() {
  const match = location.hash.match(/^#region=(.*)$/);
  return match ? decodeURIComponent(match[1]) : "";
}

function setRegion(name) {
  if (name === state.region) return;
  state.region = name;
  state.page = 1;
  const hash = name ? `#region=${encodeURIComponent(name)}` : "";
  if (location.hash !== hash) history.replaceState(null, "", `${location.pathname}${location.search}${hash}`);
  showRegionFilter();
  renderMap();
  guard(loadAlerts());
}

const toggleRegion = (name) => setRegion(state.region === name ? "" : name);

function showRegionFilter() {
  const select = $("filter-region");
  if (state.region && ![...select.options].some((o) => o.value === state.region)) select.appendChild(new Option(state.region, state.region));
  select.value = state.region;
  $("region-filter").hidden = !state.region;
  $("region-filter").querySelector("b").textContent = state.region;
  for (const row of $("regions-table").tBodies[0].rows) row.classList.toggle("selected", row.dataset.region === state.region);
}

// Regions over the US states (static/map.js, built from services/aggregator/web); the ones it has
// no place for are listed under it, as buttons too.
function renderMap() {
  const svg = $("map");
  const { unplaced } = window.SmartgridMap.render(svg, state.regionRows, { selected: state.region, onSelect: toggleRegion });
  const list = $("map-unplaced");
  list.hidden = !unplaced.length;
  list.querySelector("span").replaceChildren(...unplaced.map((region) => {
    const button = document.createElement("button");
    button.textContent = `${region.region} (${fmt(region.total_kwh)} kWh)`;
    button.dataset.region = region.region;
    button.setAttribute("aria-pressed", String(region.region === state.region));
    button.addEventListener("click", () => toggleRegion(region.region));
    return button;
  }));
}

async function loadRegions() {
  const regions = await getJson("/api/regions");
  state.regionRows = regions;
  renderMap();
  const body = $("regions-table").tBodies[0];
  body.replaceChildren();
  for (const region of regions.slice(0, 8)) {
    const row = body.insertRow();
    row.dataset.region = region.region;
    row.tabIndex = 0;
    row.title = `show only the alerts of ${region.region}`;
    row.addEventListener("click", () => toggleRegion(region.region));
    row.addEventListener("keydown", (event) => { if (event.key === "Enter") toggleRegion(region.region); });
    for (const cell of [region.rank, region.region, fmt(region.total_kwh), fmt(region.meters, 0), fmt(region.alerts, 0)]) {
      row.insertCell().textContent = cell;
    }
  }
  const names = regions.map((r) => r.region).sort();
  if (names.join() !== state.regions.join()) {
    state.regions = names;
    fillSelect($("filter-region"), names);
  }
  showRegionFilter();
}

async function loadAlerts() {
  const params = new URLSearchParams({ page: state.page, page_size: state.pageSize });
  if ($("filter-status").value) params.set("status", $("filter-status").value);
  if (state.region) params.set("region", state.region);
  const asked = state.region;
  const result = await getJson(`/api/meters?${params}`);
  if (asked !== state.region) return; // the filter changed meanwhile: its own load draws the table
  $("alerts-table").dataset.region = state.region;
  $("alerts-total").textContent = `${result.total} meters`;
  $("page-info").textContent = `page ${result.page} / ${result.pages}`;
  const body = $("alerts-table").tBodies[0];
  body.replaceChildren();
  for (const item of result.items) {
    const row = body.insertRow();
    row.dataset.meter = item.meter_id;
    row.insertCell().textContent = item.meter_id;
    const status = row.insertCell();
    status.textContent = item.status;
    status.className = `status-${item.status}`;
    row.insertCell().textContent = item.region;
    row.insertCell().textContent = fmtTime(item.since_ms);
    row.insertCell().textContent = fmtTime(item.last_reading_ms);
  }
}

function guard(promise) {
  return promise.catch((error) => { $("connection").textContent = `error: ${error.message}`; });
}

function connectStream() {
  const source = new EventSource("/api/stream");
  source.addEventListener("update", (event) => {
    const payload = JSON.parse(event.data);
    renderLive(payload.live);
    renderStatus(payload.status);
    $("connection").textContent = "live";
    $("connection").className = "pill live";
  });
  source.onerror = () => { $("connection").textContent = "reconnecting…"; $("connection").className = "pill"; };
}

function init() {
  $("filter-status").addEventListener("change", () => { state.page = 1; guard(loadAlerts()); });
  $("filter-region").addEventListener("change", () => setRegion($("filter-region").value));
  $("clear-region").addEventListener("click", () => setRegion(""));
  window.addEventListener("hashchange", () => setRegion(regionFromHash()));
  state.region = regionFromHash();
  showRegionFilter();
  renderMap();
  $("prev-page").addEventListener("click", () => { state.page = Math.max(1, state.page - 1); guard(loadAlerts()); });
  $("next-page").addEventListener("click", () => { state.page += 1; guard(loadAlerts()); });
  guard(getJson("/api/live?seconds=60").then(renderLive));
  guard(getJson("/api/status").then(renderStatus));
  guard(loadTrend());
  guard(loadRegions());
  guard(loadAlerts());
  // ?snapshot=1: no SSE (a stream never finishes loading; headless screenshots wait for that).
  if (new URLSearchParams(location.search).get("snapshot") !== "1") connectStream();
  else $("connection").textContent = "snapshot";
  setInterval(() => guard(loadRegions()), 5000);
  setInterval(() => guard(loadAlerts()), 5000);
  setInterval(() => guard(loadTrend()), 30000);
}

init();
