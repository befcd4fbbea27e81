// The Monitoring page's live charts: the services' counters (GET /api/v1/metrics, the same
// counters Prometheus scrapes at /metrics) read every few seconds and drawn on canvases, one
// line per service. A gauge is drawn as read; a counter as its change per second between two
// readings. The numbers under each chart and the table say the same for screen readers.
"use strict";

(() => {
  const section = document.getElementById("live");
  const every = Number(section.dataset.seconds) * 1000;
  const window_ = Number(section.dataset.points) * every; // the time a chart spans
  const status = document.getElementById("charts-status");
  const legend = document.getElementById("chart-legend");
  const rows = document.getElementById("counters").tBodies[0];
  const pause = document.getElementById("pause-charts");
  const COLUMNS = [
    "sessions_current", "sessions", "logins", "failed_logins", "retr_bytes", "errors",
    "lock_conflicts",
  ];
  const charts = [...section.querySelectorAll("figure.chart")].map((figure) => ({
    canvas: figure.querySelector("canvas"),
    now: figure.querySelector(".chart-now"),
    field: figure.dataset.field,
    kind: figure.dataset.kind,
    unit: figure.dataset.unit,
    series: new Map(), // service name -> [{at, value}]
  }));
  let services = []; // in the host's order, which fixes each one's colour
  let previous = null; // the last reading: {at, rows}
  let readings = 0;
  let paused = false;

  /** A number short enough for an axis: 0.25, 12, 3.4k, 1.2M. */
  function compact(value) {
    if (value >= 1e6) return `${(value / 1e6).toFixed(1).replace(/\.0$/, "")}M`;
    if (value >= 1e3) return `${(value / 1e3).toFixed(1).replace(/\.0$/, "")}k`;
    if (Number.isInteger(value)) return String(value);
    return value.toFixed(2).replace(/0+$/, "").replace(/\.$/, "");
  }

  /** The smallest 1, 2 or 5 times a power of ten at or above ``value`` (at least 1). */
  function ceiling(value) {
    if (value <= 1) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    return [1, 2, 5, 10].map((step) => step * power).find((top) => top >= value);
  }

  function showLegend(names) {
    if (names.join("\n") === services.join("\n")) return;
    services = names;
    legend.replaceChildren(
      ...names.map((name, index) => {
        const item = document.createElement("li");
        item.className = `series-${index % 4}`;
        item.textContent = name;
        return item;
      }),
    );
  }

  /** Add one reading to every chart's series. */
  function record(reading) {
    const at = Date.parse(reading.at);
    const current = new Map(reading.services.map((row) => [row.service, row]));
    for (const chart of charts) {
      for (const [name, row] of current) {
        let value = row[chart.field];
        if (chart.kind === "rate") {
          const before = previous?.rows.get(name);
          const seconds = previous ? (at - previous.at) / 1000 : 0;
          const change = before ? value - before[chart.field] : -1;
          // No rate before the second reading, nor across a restart of the host (the
          // counters start again from zero).
          if (seconds <= 0 || change < 0) continue;
          value = change / seconds;
        }
        const points = chart.series.get(name) ?? [];
        points.push({ at, value });
        while (points.length && points[0].at < at - window_) points.shift();
        chart.series.set(name, points);
      }
    }
    previous = { at, rows: current };
  }

  function draw(chart, newest) {
    const canvas = chart.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    const left = 44;
    const right = 6;
    const top = 8;
    const bottom = 18;
    const plotWidth = width - left - right;
    const plotHeight = height - top - bottom;
    let highest = 0;
    for (const points of chart.series.values()) {
      for (const point of points) highest = Math.max(highest, point.value);
    }
    const scale = ceiling(highest);
    context.font = "11px system-ui, sans-serif";
    context.lineWidth = 1;
    for (const fraction of [0, 0.5, 1]) {
      const y = top + plotHeight * (1 - fraction);
      context.strokeStyle = fraction ? "#e6e6e6" : "#999";
      context.beginPath();
      context.moveTo(left, y);
      context.lineTo(width - right, y);
      context.stroke();
      context.fillStyle = "#555";
      context.textAlign = "right";
      context.fillText(compact(scale * fraction), left - 4, y + 4);
    }
    context.textAlign = "left";
    context.fillText(`-${Math.round(window_ / 60000)} min`, left, height - 4);
    context.textAlign = "right";
    context.fillText("now", width - right, height - 4);
    let drawn = 0;
    const place = (point) => [
      left + plotWidth * (1 - (newest - point.at) / window_),
      top + plotHeight * (1 - point.value / scale),
    ];
    services.forEach((name, index) => {
      const points = chart.series.get(name) ?? [];
      if (!points.length) return;
      const colour = getComputedStyle(legend.children[index]).color;
      context.strokeStyle = colour;
      context.fillStyle = colour;
      context.lineWidth = 2;
      if (points.length === 1) {
        const [x, y] = place(points[0]);
        context.fillRect(x - 2, y - 2, 4, 4);
      } else {
        context.beginPath();
        points.forEach((point, n) => {
          const [x, y] = place(point);
          if (n === 0) context.moveTo(x, y);
          else context.lineTo(x, y);
        });
        context.stroke();
      }
      drawn += points.length;
    });
    canvas.dataset.points = String(drawn);
    canvas.dataset.peak = String(highest);
    chart.now.textContent = services
      .map((name) => {
        const points = chart.series.get(name);
        const last = points?.length ? points[points.length - 1].value : null;
        return last === null ? `${name}: no data yet` : `${name}: ${compact(last)} ${chart.unit}`;
      })
      .join(" · ");
  }

  function showTable(reading) {
    rows.replaceChildren();
    for (const row of reading.services) {
      const line = rows.insertRow();
      line.dataset.service = row.service;
      const name = document.createElement("th");
      name.scope = "row";
      name.textContent = row.service;
      line.append(name);
      for (const key of COLUMNS) {
        const cell = line.insertCell();
        cell.dataset.field = key;
        cell.textContent = row[key].toLocaleString();
      }
    }
  }

  async function tick() {
    if (paused || document.hidden) return;
    let reading;
    try {
      reading = await popgate.api("GET", "/metrics");
    } catch (error) {
      status.classList.add("error");
      status.textContent =
        error.status === 403 ? `You can't read the counters: ${error.message}` : error.message;
      return;
    }
    status.classList.remove("error");
    status.textContent = "";
    showLegend(reading.services.map((row) => row.service));
    record(reading);
    const newest = Date.parse(reading.at);
    for (const chart of charts) draw(chart, newest);
    showTable(reading);
    section.dataset.readings = String(++readings);
  }

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused) tick();
  });
  window.addEventListener("resize", () => {
    if (previous) for (const chart of charts) draw(chart, previous.at);
  });
  setInterval(tick, every);
  tick();
})();
