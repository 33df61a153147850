/* Click charts (the edition page's clicks per story, the dashboard's top stories): figures
   from the page's JSON blocks (the CSP runs no inline script), drawn with the vendored
   Chart.js as horizontal bars (story titles are long). The same figures are in tables. */
(function () {
  "use strict";
  var CHARTS = [["edition-clicks-data", "edition-clicks-chart"],
                ["top-stories-data", "top-stories-chart"]];
  function shortener(canvas) {
    // On a phone the titles would leave the bars no room: half as long there.
    var most = canvas.clientWidth < 500 ? 24 : 48;
    return function (title) {
      return title.length > most ? title.slice(0, most - 1) + "\u2026" : title;
    };
  }
  function draw() {
    if (typeof Chart === "undefined") { return; }
    var reduced = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    CHARTS.forEach(function (pair) {
      var block = document.getElementById(pair[0]);
      var canvas = document.getElementById(pair[1]);
      if (!block || !canvas || canvas.dataset.drawn) { return; }
      canvas.dataset.drawn = "1";
      var data = JSON.parse(block.textContent);
      new Chart(canvas, {
        type: "bar",
        data: { labels: data.labels.map(shortener(canvas)),
                datasets: [{ label: "Clicks", data: data.clicks, backgroundColor: "#8a0015" }] },
        options: { indexAxis: "y", maintainAspectRatio: false,
                   animation: reduced ? false : { duration: 300 },
                   plugins: { legend: { display: false } },
                   scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } }
      });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
