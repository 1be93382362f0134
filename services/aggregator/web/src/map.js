// The dashboard's region map (window.SmartgridMap): US state outlines, one marker per region sized
// and coloured by its consumption, labels placed so that none overlaps another, and a click (or
// Enter/Space) on a region handed to the page, which filters the alerts with it.
//
// Where a region goes: the state SMARTGRID_REGION_PLACES names for it (/api/regions' `state`);
// else its coordinates (configured there too, or its meters' mean latitude/longitude) when they
// fall on the map; else a state of the same name ("texas", "New York", "new-york"); else nowhere:
// render() returns it among `unplaced` and the page lists it.
import { geoAlbersUsa } from "d3-geo";
import { HEIGHT, NATION, SCALE, STATES, WIDTH } from "outline";

const SVG_NS = "http://www.w3.org/2000/svg";
const LABEL_GAPS = [3, 10, 20, 32, 46, 62, 80, 100, 124, 150];
const MARGIN = 2; // between two labels, and from the frame

const projection = geoAlbersUsa().scale(SCALE).translate([WIDTH / 2, HEIGHT / 2]);
const nameKey = (name) => String(name).toLowerCase().replace(/[^a-z]+/g, " ").trim();
const stateCentres = new Map(STATES.map(([name, , cx, cy]) => [nameKey(name), [cx, cy]]));

function el(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// [x, y] in the map's frame, or null: off the map and named after no state.
export function locate(region) {
  if (region.state && stateCentres.has(nameKey(region.state))) return stateCentres.get(nameKey(region.state));
  if (region.lat !== null && region.lat !== undefined && region.lon !== null && region.lon !== undefined) {
    const point = projection([region.lon, region.lat]);
    if (point) return point;
  }
  return stateCentres.get(nameKey(region.region)) || null;
}

const intersects = (a, b, margin = 0) =>
  a.x < b.x + b.w + margin && b.x < a.x + a.w + margin && a.y < b.y + b.h + margin && b.y < a.y + a.h + margin;

function hitsCircle(box, circle) {
  const nx = Math.max(box.x, Math.min(circle.x, box.x + box.w));
  const ny = Math.max(box.y, Math.min(circle.y, box.y + box.h));
  return (nx - circle.x) ** 2 + (ny - circle.y) ** 2 < circle.r ** 2;
}

function candidates(item) {
  const { x, y, r, w, h } = item;
  const out = [];
  for (const gap of LABEL_GAPS) {
    const d = r + gap, diag = d * Math.SQRT1_2;
    out.push(
      { x: x + d, y: y - h / 2, gap }, { x: x - d - w, y: y - h / 2, gap },
      { x: x - w / 2, y: y - d - h, gap }, { x: x - w / 2, y: y + d, gap },
      { x: x + diag, y: y - diag - h, gap }, { x: x + diag, y: y + diag, gap },
      { x: x - diag - w, y: y - diag - h, gap }, { x: x - diag - w, y: y + diag, gap },
    );
  }
  return out;
}

// Boxes {x, y, w, h, gap} for items {x, y, r, w, h} (marker centre and radius, label size), in the
// items' order (the first ones get the nearest places): no box overlaps another or leaves the
// frame; a box avoids the markers too where it can. Pure, so it can be reasoned about alone.
export function placeLabels(items, width = WIDTH, height = HEIGHT) {
  const placed = [];
  const inside = (box) => box.x >= MARGIN && box.y >= MARGIN && box.x + box.w <= width - MARGIN && box.y + box.h <= height - MARGIN;
  const free = (box) => inside(box) && placed.every((other) => !intersects(box, other, MARGIN));
  for (const item of items) {
    const boxes = candidates(item).map((c) => ({ ...c, w: item.w, h: item.h }));
    let box = boxes.find((b) => free(b) && items.every((other) => !hitsCircle(b, other))) || boxes.find(free);
    // Crowded beyond every ring: the free spot of the frame nearest the marker.
    if (!box) {
      let best = null;
      for (let by = MARGIN; by + item.h <= height - MARGIN; by += 4) {
        for (let bx = MARGIN; bx + item.w <= width - MARGIN; bx += 4) {
          const b = { x: bx, y: by, w: item.w, h: item.h, gap: Infinity };
          const distance = (bx + item.w / 2 - item.x) ** 2 + (by + item.h / 2 - item.y) ** 2;
          if (free(b) && (!best || distance < best.distance)) best = { ...b, distance };
        }
      }
      box = best || { x: MARGIN, y: MARGIN, w: item.w, h: item.h, gap: Infinity };
    }
    placed.push(box);
  }
  return placed;
}

function drawOutline(svg) {
  if (svg.querySelector("g.outline")) return;
  const group = el("g", { class: "outline", "aria-hidden": "true" });
  for (const [name, d] of STATES) {
    const path = el("path", { d, class: "state", "data-state": name });
    path.appendChild(el("title", {}, name));
    group.appendChild(path);
  }
  group.appendChild(el("path", { d: NATION, class: "nation" }));
  svg.replaceChildren(group, el("g", { class: "markers" }), el("g", { class: "labels" }));
}

const fmt = (value, digits = 2) => Number(value).toLocaleString("en-US", { maximumFractionDigits: digits });

// Draws `regions` (rows of /api/regions) on `svg`; `selected`: the region filtering the alerts,
// `onSelect(name)`: called on a click or Enter/Space on a region's marker or label.
// Returns {placed, unplaced}: the regions on the map and those it has no place for.
export function render(svg, regions, { selected = "", onSelect = () => {} } = {}) {
  drawOutline(svg);
  svg.smartgridSelect = onSelect;
  if (!svg.smartgridListening) {
    svg.smartgridListening = true;
    const pick = (event) => {
      const target = event.target.closest("[data-region]");
      if (target) svg.smartgridSelect(target.getAttribute("data-region"));
    };
    svg.addEventListener("click", pick);
    svg.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); pick(event); }
    });
  }
  const markers = svg.querySelector("g.markers");
  const labels = svg.querySelector("g.labels");
  markers.replaceChildren();
  labels.replaceChildren();
  const placed = [], unplaced = [];
  for (const region of regions) {
    const point = locate(region);
    if (point) placed.push({ region, x: point[0], y: point[1] });
    else unplaced.push(region);
  }
  const maxKwh = Math.max(0, ...placed.map((p) => p.region.total_kwh)) || 1;
  // Highest consumption first: its label gets the nearest place, its marker is drawn below smaller ones.
  placed.sort((a, b) => b.region.total_kwh - a.region.total_kwh || (a.region.region < b.region.region ? -1 : 1));
  placed.forEach((p, index) => {
    const share = p.region.total_kwh / maxKwh;
    p.r = 6 + 20 * Math.sqrt(share);
    p.high = index < 3 && p.region.total_kwh > 0;
    const name = p.region.region;
    const classes = ["region", p.high ? "high" : "", name === selected ? "selected" : "", selected && name !== selected ? "dimmed" : ""];
    const description = `${name}: ${fmt(p.region.total_kwh)} kWh in the last minute, rank ${p.region.rank}, ` +
      `${fmt(p.region.meters || 0, 0)} meters, ${fmt(p.region.alerts || 0, 0)} alerts`;
    const circle = el("circle", {
      cx: p.x.toFixed(1), cy: p.y.toFixed(1), r: p.r.toFixed(1), fill: `hsl(${(200 - 200 * share).toFixed(0)}, 80%, 55%)`,
      class: classes.filter(Boolean).join(" "), "data-region": name, "data-kwh": p.region.total_kwh,
      role: "button", tabindex: "0", "aria-pressed": String(name === selected),
      "aria-label": `${description}; ${name === selected ? "showing only its alerts, press to show all" : "press to show only its alerts"}`,
    });
    circle.appendChild(el("title", {}, description));
    markers.appendChild(circle);
    const label = el("text", { class: `region-label${name === selected ? " selected" : ""}`, "data-region": name, x: 0, y: 0 }, name);
    labels.appendChild(label);
    const box = label.getBBox();
    Object.assign(p, { label, w: box.width, h: box.height, dx: box.x, dy: box.y });
  });
  const boxes = placeLabels(placed);
  placed.forEach((p, index) => {
    const box = boxes[index];
    p.label.setAttribute("x", (box.x - p.dx).toFixed(1));
    p.label.setAttribute("y", (box.y - p.dy).toFixed(1));
    if (box.gap > LABEL_GAPS[0]) {
      // A leader from the marker's edge towards the label's nearest point.
      const tx = Math.max(box.x, Math.min(p.x, box.x + box.w)), ty = Math.max(box.y, Math.min(p.y, box.y + box.h));
      const length = Math.hypot(tx - p.x, ty - p.y) || 1;
      labels.insertBefore(el("line", {
        x1: (p.x + ((tx - p.x) * p.r) / length).toFixed(1), y1: (p.y + ((ty - p.y) * p.r) / length).toFixed(1),
        x2: tx.toFixed(1), y2: ty.toFixed(1), class: "leader",
      }), labels.firstChild);
    }
  });
  return { placed: placed.map((p) => p.region), unplaced };
}
