// Operator view (/analytics on the admin listener): platform-wide numbers
// and the state of the ingest → rollup → export pipeline.
(function () {
  "use strict";
  const root = document.getElementById("operator");
  if (!root || !window.BlueprintCharts) return;
  const C = window.BlueprintCharts;
  const range = document.getElementById("range");
  function load() {
    fetch(root.dataset.api + "?days=" + range.value).then(function (r) { return r.json(); }).then(function (s) {
      C.cards(document.getElementById("cards"), [
        ["events", C.num(s.events)], ["views", C.num(s.views)], ["unique viewers", C.num(s.unique_viewers)],
        ["watch time", C.duration(s.watch_seconds)], ["page views", C.num(s.page_views)], ["stalls", C.num(s.stalls)],
        ["stall time", C.duration(s.stall_seconds)]
      ]);
      const p = s.pipeline || {};
      C.table(document.getElementById("pipeline"), ["Stream batches", "Stream bytes", "Rolled up to", "Batches behind", "Exported to", "Parquet files", "Exported events"],
        [[p.stream_messages, p.stream_bytes, p.rollup_seq, p.rollup_behind, p.export_seq, p.export_files, p.export_events]]);
      const daily = s.daily || [];
      C.chart(document.getElementById("chart-daily"), daily.map(function (d) { return C.dayTs(d.date); }), [
        { label: "views", values: daily.map(function (d) { return d.views; }), fill: true },
        { label: "unique viewers", values: daily.map(function (d) { return d.unique_viewers; }) },
        { label: "watch hours", values: daily.map(function (d) { return d.watch_seconds / 3600; }), scale: "right" }
      ], { time: true });
      const hourly = s.hourly || [];
      C.chart(document.getElementById("chart-hourly"), hourly.map(function (h) { return Date.parse(h.hour) / 1000; }), [
        { label: "events", values: hourly.map(function (h) { return h.events; }), fill: true },
        { label: "views", values: hourly.map(function (h) { return h.views; }), scale: "right" }
      ], { time: true, height: 180 });
      C.table(document.getElementById("videos"), ["Video", "Views", "Watch time"], (s.videos || []).map(function (v) { return [v.title || v.id, v.views, C.duration(v.watch_seconds)]; }));
      C.table(document.getElementById("pages"), ["Page", "Views"], (s.pages || []).map(function (x) { return [x.name, x.views]; }));
      C.table(document.getElementById("referrers"), ["Referrer", "Views"], (s.referrers || []).map(function (x) { return [x.name, x.views]; }));
      C.table(document.getElementById("renditions"), ["Rendition", "Switches", "Watch time"], (s.renditions || []).map(function (x) { return [x.name, x.switches, C.duration(x.watch_seconds)]; }));
      document.getElementById("updated").textContent = s.from + " – " + s.to + " (UTC)";
    }).catch(function (e) { document.getElementById("updated").textContent = "Could not load: " + e.message; });
  }
  range.addEventListener("change", load);
  load();
  setInterval(load, 10000);
})();
