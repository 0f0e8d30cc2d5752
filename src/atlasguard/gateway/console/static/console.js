// atlasguard console: confirmations for destructive actions, and live traffic.
// No inline script anywhere (the content-security policy allows none); no external code.
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) event.preventDefault();
});

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  row.appendChild(td);
  return td;
}

function fill(tbody, rows, render) {
  const fresh = document.createElement("tbody");
  for (const item of rows) {
    const tr = document.createElement("tr");
    render(tr, item);
    fresh.appendChild(tr);
  }
  tbody.replaceWith(fresh);
}

const SVG = "http://www.w3.org/2000/svg";

function drawSeries(svg, series, peak) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const w = 600 / series.length;
  series.forEach((s, i) => {
    const ha = (110 * s.allowed) / peak;
    const hr = (110 * s.refused) / peak;
    for (const [cls, y, h] of [["allowed", 115 - ha - hr, ha], ["refused", 115 - hr, hr]]) {
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("class", cls);
      rect.setAttribute("x", String(i * w + 1));
      rect.setAttribute("y", String(y));
      rect.setAttribute("width", String(Math.max(0, w - 2)));
      rect.setAttribute("height", String(h));
      svg.appendChild(rect);
    }
  });
}

function render(data) {
  document.getElementById("total").textContent = String(data.total);
  document.getElementById("as-of").textContent = data.as_of;
  for (const el of document.querySelectorAll("[data-outcome]")) {
    el.textContent = String(data.outcomes[el.dataset.outcome] ?? 0);
  }
  for (const el of document.querySelectorAll("[data-p]")) {
    const v = data.latency[el.dataset.p];
    el.textContent = v === null || v === undefined ? "–" : String(v);
  }
  drawSeries(document.getElementById("series"), data.series, data.peak);
  const truncated = document.getElementById("truncated");
  truncated.hidden = data.covered_seconds === null;
  document.getElementById("covered").textContent = String(data.covered_seconds);
  fill(document.querySelector("#reasons tbody"), Object.entries(data.reasons), (tr, [r, n]) => {
    cell(tr, r);
    cell(tr, n);
  });
  fill(document.querySelector("#principals tbody"), data.principals, (tr, u) => {
    for (const v of [u.principal, u.requests, u.refused, u.today, u.daily_limit]) cell(tr, v);
    const td = cell(tr, "");
    if (u.used !== null) {
      const meter = document.createElement("meter");
      meter.min = 0;
      meter.max = 1;
      meter.value = u.used;
      td.textContent = "";
      td.append(meter, ` ${Math.round(u.used * 100)}%`);
    }
  });
  fill(document.querySelector("#latest tbody"), data.latest, (tr, r) => {
    const td = cell(tr, "");
    const a = document.createElement("a");
    a.href = `/console/audit/proof/${r.idx}`;
    a.textContent = String(r.idx);
    td.textContent = "";
    td.appendChild(a);
    for (const v of [r.time, r.principal, r.action, r.model, r.outcome, r.reason, r.latency_ms]) cell(tr, v);
  });
}

async function poll(source, live) {
  try {
    const answer = await fetch(source, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (answer.status === 401) {
      window.location.assign("/console/login");
      return;
    }
    if (!answer.ok) throw new Error(String(answer.status));
    render(await answer.json());
    live.classList.remove("stale");
    live.textContent = "live: updates every 3 s";
  } catch (err) {
    live.classList.add("stale");
    live.textContent = `not updating (${err.message}); retrying`;
  }
}

const traffic = document.getElementById("traffic");
if (traffic) {
  const live = document.getElementById("live");
  const source = traffic.dataset.source;
  window.setInterval(() => poll(source, live), 3000);
}
