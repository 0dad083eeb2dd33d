// vec serve: the one script (no build step). Draws the survey's embedding map with plotly.js (served from
// the plotly Python package) from /api/map; a click on a point opens that CCD's page.
(function () {
  "use strict";
  function drawMap(el) {
    fetch(el.dataset.src, { credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { return r.json().then(function (e) { throw new Error(e.error || r.statusText); }); }
        return r.json();
      })
      .then(function (m) {
        var traces = m.groups.map(function (g) {
          var pts = m.points.filter(function (p) { return p.group === g.name; });
          return {
            type: "scatter", mode: "markers", name: g.name + " (" + g.n + ")",
            x: pts.map(function (p) { return p.x; }), y: pts.map(function (p) { return p.y; }),
            customdata: pts.map(function (p) { return p.ccd; }),
            hovertemplate: "%{customdata}<extra>" + g.name + "</extra>",
            marker: { color: g.colour, symbol: g.symbol, size: 8, line: { width: 0.5, color: "#333" } }
          };
        });
        var layout = {
          margin: { l: 30, r: 10, t: 30, b: 30 }, hovermode: "closest", dragmode: "pan",
          title: { text: m.method + " of " + m.n + " of " + m.n_total + " CCDs (" + m.space + ")", font: { size: 13 } },
          xaxis: { zeroline: false, showticklabels: false }, yaxis: { zeroline: false, showticklabels: false },
          legend: { font: { size: 11 } }
        };
        el.innerHTML = "";
        return Plotly.newPlot(el, traces, layout, { displaylogo: false, responsive: true }).then(function () {
          el.on("plotly_click", function (ev) {
            var p = ev.points && ev.points[0];
            if (p && p.customdata) { window.location.href = "/ccd/" + p.customdata; }
          });
          el.setAttribute("data-points", String(m.n));
        });
      })
      .catch(function (err) {
        el.textContent = "map unavailable: " + err.message;
        el.setAttribute("data-points", "0");
      });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var el = document.getElementById("map");
    if (el && window.Plotly) { drawMap(el); }
    else if (el) { window.addEventListener("load", function () { drawMap(el); }); }
  });
})();
