// Chart and table helpers of the analytics pages (creator studio, operator
// view), on the vendored uPlot (static/vendor/uplot, pinned).
(function () {
  "use strict";
  function num(n) {
    n = Number(n) || 0; // absent counts are zero
    if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return String(Math.round(n * 100) / 100);
  }
  function duration(s) {
    s = Math.round(s || 0);
    if (s >= 3600) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    if (s >= 60) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    return s + "s";
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }
  function cards(el, items) {
    clear(el);
    items.forEach(function (it) {
      const d = document.createElement("div");
      const b = document.createElement("b");
      b.textContent = it[1];
      d.appendChild(b);
      d.appendChild(document.createTextNode(it[0]));
      el.appendChild(d);
    });
  }
  // table fills el with a header row and rows; cells that are numbers are
  // right-aligned. rowAttrs(i) may return attributes for row i.
  function table(el, head, rows, rowAttrs) {
    clear(el);
    const tr = document.createElement("tr");
    head.forEach(function (h) { const th = document.createElement("th"); th.textContent = h; tr.appendChild(th); });
    el.appendChild(tr);
    if (rows.length === 0) {
      const r = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = head.length;
      td.className = "empty";
      td.textContent = "No data yet.";
      r.appendChild(td);
      el.appendChild(r);
      return;
    }
    rows.forEach(function (row, i) {
      const r = document.createElement("tr");
      const attrs = rowAttrs ? rowAttrs(i) : null;
      if (attrs) Object.keys(attrs).forEach(function (k) { r.setAttribute(k, attrs[k]); });
      row.forEach(function (c) {
        const td = document.createElement("td");
        if (typeof c === "number" || c === undefined) { td.className = "n"; td.textContent = num(c); } else td.textContent = c;
        r.appendChild(td);
      });
      el.appendChild(r);
    });
  }
  const colors = ["#3355ff", "#e0245e", "#17a34a", "#f59e0b"];
  // chart draws series over x in el (replacing what was there). opts.time:
  // x is unix seconds; opts.percent: y is a 0..1 share.
  function chart(el, x, series, opts) {
    opts = opts || {};
    clear(el);
    if (!window.uPlot) { el.textContent = "Charts unavailable."; return; }
    const width = Math.max(300, el.clientWidth - 16);
    const scales = { x: { time: !!opts.time } };
    const axes = [{}];
    const useRight = series.some(function (s) { return s.scale === "right"; });
    axes.push({ scale: "y", values: opts.percent ? function (u, v) { return v.map(function (t) { return Math.round(t * 100) + "%"; }); } : undefined });
    if (useRight) axes.push({ scale: "right", side: 1, grid: { show: false } });
    if (opts.percent) scales.y = { range: [0, 1] };
    const u = new uPlot({
      width: width, height: opts.height || 220,
      scales: scales, axes: axes,
      series: [{}].concat(series.map(function (s, i) {
        return { label: s.label, stroke: colors[i % colors.length], width: 2, scale: s.scale || "y", fill: s.fill ? colors[i % colors.length] + "22" : undefined,
          paths: s.bars && uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.6, 40] }) : undefined };
      }))
    }, [x].concat(series.map(function (s) { return s.values; })), el);
    return u;
  }
  function dayTs(d) { return Date.parse(d + "T00:00:00Z") / 1000; }
  window.BlueprintCharts = { num: num, duration: duration, cards: cards, table: table, chart: chart, dayTs: dayTs };
})();
