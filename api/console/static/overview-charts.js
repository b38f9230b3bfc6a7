// Draws the overview's two charts from the JSON the server put in #overview-data (sample counts and micro-unit
// integers, oldest first like the tables beside them, which stay the exact and accessible fallback). Without
// JavaScript (or without data) only the tables show.
(function () {
  "use strict";
  function axes() {
    // The axes take the theme's colours (the stylesheet's custom properties), light or dark.
    var style = getComputedStyle(document.documentElement);
    var fg = style.getPropertyValue("--fg").trim(), line = style.getPropertyValue("--line").trim();
    return { stroke: fg, grid: { stroke: line }, ticks: { stroke: line } };
  }
  function seconds(iso) { return Date.parse(iso.length === 10 ? iso + "T00:00:00Z" : iso) / 1000; }
  // The x-axis and legend show times in `zone`, not the browser's: the tables beside the charts are in the
  // lab's configured zone, and a chart read in another zone would put a bucket in another hour or day.
  // The y-axis starts at zero: uPlot's own range starts near the data's minimum, which made a dip from 23 to 18
  // look like a fall to nothing.
  function chart(holder, xs, series, columns, yLabel, yRange, zone) {
    var axis = axes();
    holder.hidden = false;   // hidden until drawn: no empty box without JavaScript or without data
    holder.textContent = "";
    new uPlot({ width: Math.max(280, holder.clientWidth), height: 240, series: [{}].concat(series),
      axes: [axis, Object.assign({ label: yLabel, size: 70 }, axis)], scales: { x: { time: true }, y: { range: yRange } },
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), zone); } },
      [xs].concat(columns), holder);
  }
  function draw() {
    var source = document.getElementById("overview-data");
    if (!source || typeof uPlot === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    var states = document.getElementById("states-chart"), st = data.states;
    if (states && st.buckets.length) {
      var share = function (key) {
        return st[key].map(function (n, i) { return st.samples[i] ? 100 * n / st.samples[i] : null; });
      };
      var pct = function (u, v) { return v == null ? "" : v.toFixed(1) + " %"; };
      chart(states, st.buckets.map(seconds), [
        { label: states.dataset.busy, stroke: "#0969da", width: 2, value: pct },
        { label: states.dataset.idle, stroke: "#bc4c00", width: 2, value: pct },
        { label: states.dataset.free, stroke: "#1a7f37", width: 2, value: pct }],
        [share("busy"), share("idle"), share("free")], "%", [0, 100], data.timezone);
    }
    var charged = document.getElementById("charged-chart"), ch = data.charged;
    if (charged && ch.days.length) {
      chart(charged, ch.days.map(seconds), [{ label: charged.dataset.label, stroke: "#8250df", width: 2,
        value: function (u, v) { return v == null ? "" : v.toFixed(6); } }],
        [ch.amounts.map(function (a) { return a / 1e6; })], data.currency,
        function (u, min, max) { return [Math.min(0, min), max > 0 ? max * 1.05 : 1]; },
        // A day is already the lab's calendar day: drawn at its UTC midnight and read back in UTC, it shows as
        // that date in every browser.
        "Etc/UTC");
    }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
