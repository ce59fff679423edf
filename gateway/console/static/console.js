// Draws the console's charts with uPlot from JSON embedded in the page (no request of its own), and
// again after htmx swaps in a new page. Each .chart names its data (data-source: a <script
// type="application/json"> id holding [{t: unix seconds, field: value, ...}]) and the fields to draw.
(function () {
  "use strict";
  var COLOURS = ["#3559e0", "#c4320a", "#b54708", "#067647", "#7a5af8", "#667085"];

  function draw(el) {
    if (el.dataset.drawn) return;
    var source = document.getElementById(el.dataset.source);
    if (!source || typeof uPlot === "undefined") return;
    var rows = JSON.parse(source.textContent);
    var fields = el.dataset.fields.split(",");
    var data = [rows.map(function (r) { return r.t; })];
    fields.forEach(function (f) { data.push(rows.map(function (r) { return r[f] === undefined ? null : r[f]; })); });
    var series = [{}].concat(fields.map(function (f, i) {
      return { label: f.replace(/_/g, " "), stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: false };
    }));
    if (el.dataset.zero) {  // the no-difference line under a confidence sequence
      data.push(rows.map(function () { return 0; }));
      series.push({ label: "no difference", stroke: "#98a2b3", width: 1, dash: [4, 4] });
    }
    var width = Math.max(el.clientWidth || el.parentNode.clientWidth || 520, 300);
    el.dataset.drawn = "1";
    new uPlot({ width: width, height: 220, series: series, scales: { x: { time: true } },
                tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
                axes: [{}, { size: 80 }], legend: { live: true } }, data, el);
  }

  function drawAll() { document.querySelectorAll(".chart").forEach(draw); }

  document.addEventListener("DOMContentLoaded", drawAll);
  document.addEventListener("htmx:afterSettle", drawAll);
  window.addEventListener("load", drawAll);
})();
