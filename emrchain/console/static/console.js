// Redraws the operator console from /console/state every few seconds (docs/console.md).
// Same tables and chart as the server's first paint; text goes in through textContent only.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const CHART = { width: 600, height: 160, margin: 28 };

function cell(tag, text, scope) {
  const element = document.createElement(tag);
  element.textContent = text;
  if (scope) element.setAttribute("scope", scope);
  return element;
}

function redrawTable(panel) {
  const table = document.getElementById(panel.id + "-table");
  if (!table) return;
  table.caption.textContent = panel.caption;
  const body = document.createElement("tbody");
  if (panel.rows.length === 0) {
    const row = body.insertRow();
    const only = cell("td", panel.empty);
    only.colSpan = panel.headers.length;
    row.appendChild(only);
  }
  for (const data of panel.rows) {
    const row = body.insertRow();
    row.dataset.key = data.key;
    if (data.state) row.className = data.state;
    data.cells.forEach((text, index) => {
      row.appendChild(index === 0 ? cell("th", text, "row") : cell("td", text));
    });
  }
  table.replaceChild(body, table.tBodies[0]);
}

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

function redrawChart(svg, bars) {
  const field = svg.dataset.field;
  const values = bars.map((bar) => bar[field] || 0);
  const top = Math.max(0, ...values) || 1;
  const plotWidth = CHART.width - CHART.margin;
  const plotHeight = CHART.height - CHART.margin;
  const width = plotWidth / Math.max(values.length, 1);
  const group = svgElement("g", { class: "bars" });
  values.forEach((value, index) => {
    const height = (value * plotHeight) / top;
    group.appendChild(svgElement("rect", {
      class: "bar",
      x: (CHART.margin + index * width + 1).toFixed(1),
      y: (plotHeight - height).toFixed(1),
      width: Math.max(width - 2, 1).toFixed(1),
      height: height.toFixed(1),
    }));
  });
  svg.replaceChild(group, svg.querySelector("g.bars"));
  svg.querySelector("text.top").textContent = String(top);
  svg.querySelector("text.first").textContent = bars.length ? bars[0].end : "";
  svg.querySelector("text.last").textContent = bars.length ? bars[bars.length - 1].end : "";
}

async function refresh() {
  const updated = document.getElementById("updated");
  try {
    const response = await fetch("/console/state", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const state = await response.json();
    state.tables.forEach(redrawTable);
    document.querySelectorAll("svg[data-field]").forEach((svg) => redrawChart(svg, state.chart.bars));
    updated.textContent = "Figures as of " + state.generated + " UTC.";
    updated.className = "";
  } catch (error) {
    updated.textContent = "The node did not answer (" + error.message + "); the figures below are old.";
    updated.className = "bad";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const interval = Number(document.body.dataset.pollMs) || 3000;
  setInterval(refresh, interval);
});
