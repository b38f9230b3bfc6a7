// Draws the usage page's chart from the JSON the server put in #usage-data (micro-unit integers; divided
// here only to draw: the table beside it carries the exact amounts). Without JavaScript the table stays.
(function () {
  "use strict";
  function draw() {
    var holder = document.getElementById("usage-chart");
    var source = document.getElementById("usage-data");
    if (!holder || !source || typeof uPlot === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    var xs = data.days.map(function (d) { return Date.parse(d + "T00:00:00Z") / 1000; });
    var palette = ["#0969da", "#1a7f37", "#bc4c00", "#8250df", "#cf222e", "#9a6700"];
    var series = [{}];
    var columns = [xs];
    data.series.forEach(function (s, i) {
      series.push({ label: s.key, stroke: palette[i % palette.length], width: 2,
        value: function (u, v) { return v == null ? "" : v.toFixed(6); } });
      columns.push(s.amounts.map(function (a) { return a / 1e6; }));
    });
    // The axes take the theme's colours (the stylesheet's custom properties), light or dark.
    var style = getComputedStyle(document.documentElement);
    var fg = style.getPropertyValue("--fg").trim(), line = style.getPropertyValue("--line").trim();
    var axis = { stroke: fg, grid: { stroke: line }, ticks: { stroke: line } };
    // The y-axis carries its unit: the amounts are money in the ledger's currency.
    var yAxis = Object.assign({ label: data.currency, size: 70 }, axis);
    var width = Math.max(280, holder.clientWidth);
    holder.textContent = "";
    // The days are the lab's calendar days (the ledger's zone): drawn at their UTC midnight and read back in
    // UTC, each shows as its own date whatever the browser's zone (a browser west of UTC showed the day before).
    new uPlot({ width: width, height: 280, series: series, axes: [axis, yAxis], scales: { x: { time: true } },
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); } },
      columns, holder);
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
  // With JavaScript the period links swap only the page's main part (htmx): draw the new period's data.
  document.addEventListener("htmx:afterSettle", draw);
})();
