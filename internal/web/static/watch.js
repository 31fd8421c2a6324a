// Watch page: hls.js playback with a quality selector; while the item is
// processing, polls its status and shows progress, then starts the player.
// Player events go to analytics (static/analytics.js): view start,
// position heartbeats while playing, quality switches and stalls.
(function () {
  "use strict";
  const article = document.querySelector("article.watch");
  if (!article) return;
  const id = article.dataset.videoId;
  const video = document.getElementById("video");
  const quality = document.getElementById("quality");
  const levelLabel = document.getElementById("level");
  const overlay = document.getElementById("processing");

  // Analytics of this page load; events wait in early until the tracker
  // is there.
  let tracker = null;
  const early = [];
  function track(ev) {
    if (tracker) tracker.send(ev); else early.push(ev);
  }
  function withAnalytics(cb) {
    if (window.BlueprintAnalytics) { cb(window.BlueprintAnalytics); return; }
    const s = document.createElement("script");
    s.src = "/static/analytics.js";
    s.onload = function () { if (window.BlueprintAnalytics) cb(window.BlueprintAnalytics); };
    document.head.appendChild(s);
  }
  let rendition = "";
  function watchAnalytics(hls) {
    if (!video) return;
    let started = false, played = 0, lastTime = 0, stallAt = 0;
    function take() { const p = played; played = 0; return Math.round(p * 1000) / 1000; }
    function beat() {
      if (!started) return;
      const ev = { type: "heartbeat", pos: video.currentTime, played: take() };
      if (rendition) ev.rendition = rendition;
      track(ev);
    }
    video.addEventListener("timeupdate", function () {
      const t = video.currentTime, d = t - lastTime;
      if (!video.paused && !video.seeking && d > 0 && d < 2) played += d; // seeks are not playing time
      lastTime = t;
    });
    video.addEventListener("playing", function () {
      if (!started) {
        started = true;
        lastTime = video.currentTime;
        track({ type: "view_start", pos: video.currentTime, referrer: document.referrer });
      }
      if (stallAt) {
        track({ type: "stall", stall_ms: Math.max(1, Math.round(performance.now() - stallAt)), pos: video.currentTime });
        stallAt = 0;
      }
    });
    video.addEventListener("waiting", function () { if (started && !stallAt) stallAt = performance.now(); });
    video.addEventListener("pause", beat);
    video.addEventListener("ended", beat);
    document.addEventListener("visibilitychange", function () { if (document.visibilityState === "hidden") beat(); });
    if (hls) {
      hls.on(Hls.Events.ERROR, function (_, data) {
        if (started && !stallAt && data && data.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) stallAt = performance.now();
      });
    }
    withAnalytics(function (A) {
      A.start({ videoId: id }).then(function (t) {
        tracker = t;
        early.splice(0).forEach(function (ev) { t.send(ev); });
        setInterval(function () { if (started && !video.paused) beat(); }, (t.heartbeatSeconds || 10) * 1000);
      });
    });
  }

  function play(src) {
    if (!video || !src) return;
    if (window.Hls && Hls.isSupported()) {
      const hls = new Hls({ capLevelToPlayerSize: false });
      window.blueprintHls = hls;
      watchAnalytics(hls);
      hls.loadSource(src);
      hls.attachMedia(video);
      hls.on(Hls.Events.MANIFEST_PARSED, function (_, data) {
        data.levels.forEach(function (l, i) {
          const o = document.createElement("option");
          o.value = i;
          o.textContent = (l.height ? l.height + "p" : "level " + i) + " · " + Math.round(l.bitrate / 1000) + " kb/s";
          quality.appendChild(o);
        });
      });
      hls.on(Hls.Events.LEVEL_SWITCHED, function (_, data) {
        const l = hls.levels[data.level];
        levelLabel.textContent = l && l.height ? "playing " + l.height + "p" : "";
        rendition = l && l.height ? l.height + "p" : "level " + data.level;
        track({ type: "quality", rendition: rendition, pos: video.currentTime });
      });
      quality.addEventListener("change", function () {
        hls.currentLevel = parseInt(quality.value, 10);
      });
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = src; // Safari plays HLS natively
      watchAnalytics(null);
    }
  }

  if (article.dataset.status === "ready") {
    if (video) play(video.dataset.src);
    return;
  }
  if (article.dataset.status !== "processing") return;
  const pct = document.getElementById("proc-pct");
  const bar = document.getElementById("proc-bar");
  const timer = setInterval(function () {
    fetch("/api/v1/videos/" + id, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (v) {
        if (v.status === "processing") {
          const p = Math.round((v.progress || 0) * 100);
          if (pct) pct.textContent = p;
          if (bar) bar.value = p;
          return;
        }
        clearInterval(timer);
        window.location.reload();
      })
      .catch(function () {});
  }, 2000);
})();
