// Draws each component's monthly usage (the JSON in #chart-data) into its canvas with Chart.js.
(function () {
  "use strict";
  var data = document.getElementById("chart-data");
  if (!data || !window.Chart) { return; }
  var charts = JSON.parse(data.textContent);
  var palette = ["#1f5f8b", "#2e8b57", "#b5651d", "#6a4c93", "#c0392b", "#127475"];
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    var index = Number(canvas.dataset.chart);
    var chart = charts[index];
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: chart.labels,
        datasets: [{
          label: chart.name + " (" + chart.unit + ")",
          data: chart.values,
          backgroundColor: palette[index % palette.length],
          borderRadius: 3,
        }],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: function (item) {
                return item.parsed.y.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 }) + " " + chart.unit;
              },
            },
          },
        },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
      },
    });
  });
})();
