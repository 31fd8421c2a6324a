// Watch page: hls.js playback with a quality selector; while the item is
// processing, polls its status and shows progress, then starts the player.
(function () {
  "use strict";
  const article = document.querySelector("article.watch");
  if (!article) return;
  const id = article.dataset.videoId;
  const video = document.getElementById("video");
  const quality = document.getElementById("quality");
  const levelLabel = document.getElementById("level");
  const overlay = document.getElementById("processing");

  function play(src) {
    if (!video || !src) return;
    if (window.Hls && Hls.isSupported()) {
      const hls = new Hls({ capLevelToPlayerSize: false });
      window.blueprintHls = hls;
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
      });
      quality.addEventListener("change", function () {
        hls.currentLevel = parseInt(quality.value, 10);
      });
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = src; // Safari plays HLS natively
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
