// thriftgate dashboard: draws the charts from the JSON the server embedded in the page.
// Chart.js is served from dashboard/node_modules; without it the page keeps its tables.
(function () {
  "use strict";

  const PALETTE = ["#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4",
    "#ec4899", "#84cc16", "#9ca3af"];
  const SAVINGS = ["#475569", "#10b981", "#06b6d4", "#8b5cf6"];

  function usd(v) {
    if (v === 0) return "$0";
    const sign = v < 0 ? "-" : "";
    const a = Math.abs(v);
    if (a >= 1) return sign + "$" + a.toLocaleString("en-US", { maximumFractionDigits: 2 });
    // Two significant digits in plain decimals (toPrecision writes 5e-7 as "5.0e-7").
    return sign + "$" + a.toFixed(Math.min(20, 1 - Math.floor(Math.log10(a))));
  }

  function money(axis) {
    return { beginAtZero: true, ticks: { callback: (v) => usd(Number(v)) }, stacked: axis };
  }

  function tooltip() {
    return { callbacks: { label: (c) => (c.dataset.label ? c.dataset.label + ": " : "") +
      usd(c.parsed.y !== undefined && c.chart.options.indexAxis !== "y" ? c.parsed.y : c.parsed.x) } };
  }

  function spendChart(el, d) {
    return new Chart(el, {
      type: "bar",
      data: {
        labels: d.labels,
        datasets: d.datasets.map((s, i) => ({ label: s.label, data: s.data,
          backgroundColor: PALETTE[i % PALETTE.length], borderWidth: 0 })),
      },
      options: {
        maintainAspectRatio: false, animation: false,
        scales: { x: { stacked: true, grid: { display: false } }, y: money(true) },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } }, tooltip: tooltip() },
      },
    });
  }

  function barChart(el, d, color) {
    return new Chart(el, {
      type: "bar",
      data: { labels: d.labels, datasets: [{ label: "Spend", data: d.data, backgroundColor: color }] },
      options: {
        indexAxis: "y", maintainAspectRatio: false, animation: false,
        scales: { x: money(false), y: { grid: { display: false } } },
        plugins: { legend: { display: false }, tooltip: tooltip() },
      },
    });
  }

  function savingsChart(el, d) {
    // One stacked bar: what was paid plus what each technique saved = the counterfactual cost.
    return new Chart(el, {
      type: "bar",
      data: {
        labels: ["Counterfactual " + usd(d.counterfactual)],
        datasets: d.labels.map((label, i) => ({ label: label, data: [d.data[i]],
          backgroundColor: SAVINGS[i], borderWidth: 0 })),
      },
      options: {
        indexAxis: "y", maintainAspectRatio: false, animation: false,
        scales: { x: money(true), y: { stacked: true, grid: { display: false } } },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } }, tooltip: tooltip() },
      },
    });
  }

  function draw() {
    const node = document.getElementById("chart-data");
    if (!node) return;
    if (typeof Chart === "undefined") {
      document.body.classList.add("no-charts");
      return;
    }
    const data = JSON.parse(node.textContent);
    const made = {};
    const at = (id) => document.getElementById(id);
    if (data.spend && at("chart-spend")) made.spend = spendChart(at("chart-spend"), data.spend);
    if (data.savings && at("chart-savings")) made.savings = savingsChart(at("chart-savings"), data.savings);
    if (data.byModel && at("chart-model")) made.byModel = barChart(at("chart-model"), data.byModel, "#2563eb");
    if (data.byDeployment && at("chart-deployment")) {
      made.byDeployment = barChart(at("chart-deployment"), data.byDeployment, "#0891b2");
    }
    window.thriftgateCharts = made; // read by the browser tests
  }

  function wire() {
    document.querySelectorAll("select[data-autosubmit]").forEach((s) =>
      s.addEventListener("change", () => s.form.submit()));
    document.querySelectorAll("form[data-confirm]").forEach((f) =>
      f.addEventListener("submit", (e) => { if (!window.confirm(f.dataset.confirm)) e.preventDefault(); }));
  }

  document.addEventListener("DOMContentLoaded", () => { wire(); draw(); });
})();
