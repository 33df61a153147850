/* The dashboard's topic growth: follows gained (above the axis) and lost (below) per topic,
   from the page's JSON block (the CSP runs no inline script), drawn with the vendored
   Chart.js. The same figures are in the table beside it. */
(function () {
  "use strict";
  function draw() {
    var block = document.getElementById("topic-growth-data");
    var canvas = document.getElementById("topic-growth-chart");
    if (!block || !canvas || typeof Chart === "undefined") { return; }
    var data = JSON.parse(block.textContent);
    var reduced = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: [
          { label: "Gained", data: data.gained, backgroundColor: "#1e6b34" },
          { label: "Lost", data: data.lost, backgroundColor: "#7a4f00" }
        ]
      },
      options: {
        indexAxis: "y",
        maintainAspectRatio: false,
        animation: reduced ? false : { duration: 300 },
        interaction: { mode: "index", intersect: false },
        plugins: { tooltip: { callbacks: {
          label: function (item) { return item.dataset.label + ": " + Math.abs(item.raw); }
        } } },
        scales: {
          x: { stacked: true, ticks: { precision: 0,
                                       callback: function (v) { return Math.abs(v); } } },
          y: { stacked: true, ticks: { autoSkip: false } }
        }
      }
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
