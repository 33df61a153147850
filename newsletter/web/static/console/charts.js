/* The dashboard's charts: figures from the page's JSON block (the CSP runs no inline
   script), drawn with the vendored Chart.js. The same figures are in tables on the page. */
(function () {
  "use strict";
  function draw() {
    var block = document.getElementById("chart-data");
    if (!block || typeof Chart === "undefined") { return; }
    var data = JSON.parse(block.textContent);
    var reduced = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.color = "#333";
    Chart.defaults.animation = reduced ? false : { duration: 300 };
    var trend = document.getElementById("trend-chart");
    if (trend) {
      new Chart(trend, {
        data: {
          labels: data.trend.labels,
          datasets: [
            { type: "line", label: "Active readers", data: data.trend.active, yAxisID: "y",
              borderColor: "#8a0015", backgroundColor: "#8a0015", pointRadius: 0, tension: 0.2 },
            { type: "bar", label: "Joined", data: data.trend.joined, yAxisID: "y1",
              backgroundColor: "#1e6b34" },
            { type: "bar", label: "Left", data: data.trend.left, yAxisID: "y1",
              backgroundColor: "#7a4f00" }
          ]
        },
        options: {
          maintainAspectRatio: false,
          interaction: { mode: "index", intersect: false },
          scales: {
            y: { position: "left", title: { display: true, text: "active" }, beginAtZero: false,
                 ticks: { precision: 0 } },
            y1: { position: "right", title: { display: true, text: "per day" }, beginAtZero: true,
                  grid: { drawOnChartArea: false }, ticks: { precision: 0 } },
            x: { ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 8 } }
          }
        }
      });
    }
    var editions = document.getElementById("editions-chart");
    if (editions) {
      new Chart(editions, {
        type: "bar",
        data: {
          labels: data.editions.labels,
          datasets: [
            { label: "Unsubscribes", data: data.editions.unsubscribed, backgroundColor: "#8a0015" },
            { label: "Bounces and complaints", data: data.editions.bounced, backgroundColor: "#4f4f4f" }
          ]
        },
        options: { maintainAspectRatio: false,
                   scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
      });
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
