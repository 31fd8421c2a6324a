// Creator dashboard (/studio): the caller's views, unique viewers, watch
// time, traffic, referrers and playback health, and per video the
// retention curve, from /api/v1/analytics.
(function () {
  "use strict";
  const root = document.getElementById("studio");
  if (!root || !window.BlueprintCharts) return;
  const C = window.BlueprintCharts;
  const range = document.getElementById("range");
  let selected = null;

  function get(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) return r.json().then(function (e) { throw new Error(e.error || r.statusText); });
      return r.json();
    });
  }
  function summary(el, s) {
    C.cards(el, [
      ["views", C.num(s.views)], ["unique viewers", C.num(s.unique_viewers)], ["watch time", C.duration(s.watch_seconds)],
      ["average view", C.duration(s.avg_view_seconds)], ["average % watched", (s.avg_percent_watched || 0).toFixed(1) + "%"],
      ["stalls", C.num(s.stalls)]
    ]);
  }
  function load() {
    const days = range.value;
    get(root.dataset.api + "?days=" + days).then(function (s) {
      summary(document.getElementById("cards"), s);
      const daily = s.daily || [];
      C.chart(document.getElementById("chart-daily"), daily.map(function (d) { return C.dayTs(d.date); }), [
        { label: "views", values: daily.map(function (d) { return d.views; }), fill: true },
        { label: "unique viewers", values: daily.map(function (d) { return d.unique_viewers; }) },
        { label: "watch hours", values: daily.map(function (d) { return d.watch_seconds / 3600; }), scale: "right" }
      ], { time: true });
      const hourly = s.hourly || [];
      C.chart(document.getElementById("chart-hourly"), hourly.map(function (h) { return Date.parse(h.hour) / 1000; }), [
        { label: "views", values: hourly.map(function (h) { return h.views; }), fill: true },
        { label: "watch minutes", values: hourly.map(function (h) { return h.watch_seconds / 60; }), scale: "right" }
      ], { time: true, height: 180 });
      const videos = s.videos || [];
      C.table(document.getElementById("videos"), ["Video", "Views", "Watch time"], videos.map(function (v) {
        return [v.title || v.id, v.views, C.duration(v.watch_seconds)];
      }), function (i) { return { "data-video": videos[i].id }; });
      C.table(document.getElementById("referrers"), ["Referrer", "Views"], (s.referrers || []).map(function (r) { return [r.name, r.views]; }));
      C.table(document.getElementById("renditions"), ["Rendition", "Switches to it", "Watch time"], (s.renditions || []).map(function (r) {
        return [r.name, r.switches, C.duration(r.watch_seconds)];
      }));
      document.getElementById("updated").textContent = s.from + " – " + s.to + " (UTC)";
      if (selected) loadVideo(selected.id, selected.title);
    }).catch(function (e) { document.getElementById("updated").textContent = "Could not load analytics: " + e.message; });
  }
  function loadVideo(id, title) {
    selected = { id: id, title: title };
    get(root.dataset.videoApi + encodeURIComponent(id) + "?days=" + range.value).then(function (s) {
      document.getElementById("video-detail").hidden = false;
      document.getElementById("video-title").textContent = title;
      summary(document.getElementById("video-cards"), s);
      const ret = s.retention || [];
      C.chart(document.getElementById("chart-retention"), ret.map(function (_, i) { return i; }), [
        { label: "still watching", values: ret, fill: true }
      ], { percent: true, height: 200 });
      C.table(document.getElementById("video-referrers"), ["Referrer", "Views"], (s.referrers || []).map(function (r) { return [r.name, r.views]; }));
      C.table(document.getElementById("video-renditions"), ["Rendition", "Switches to it", "Watch time"], (s.renditions || []).map(function (r) {
        return [r.name, r.switches, C.duration(r.watch_seconds)];
      }));
    }).catch(function (e) { document.getElementById("video-title").textContent = "Could not load: " + e.message; });
  }
  document.getElementById("videos").addEventListener("click", function (ev) {
    const tr = ev.target.closest("tr[data-video]");
    if (!tr) return;
    document.querySelectorAll("#videos tr.selected").forEach(function (r) { r.classList.remove("selected"); });
    tr.classList.add("selected");
    loadVideo(tr.dataset.video, tr.firstChild.textContent);
  });
  range.addEventListener("change", load);
  load();
  setInterval(load, 30000);
})();
