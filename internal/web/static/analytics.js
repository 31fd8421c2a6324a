// Analytics tracker: one view session per page load (a signed token from
// POST /api/v1/analytics/sessions), events numbered 1, 2, 3… and sent in
// order in batches to POST /api/v1/analytics/events. A batch that fails is
// retried with the same batch_id, so the server stores it once; what is
// queued when the page goes away leaves with navigator.sendBeacon.
//
//   BlueprintAnalytics.start({videoId: "123"}).then(function (t) {
//     t.send({type: "view_start", pos: 0});
//   });
//
// Included as <script src="/static/analytics.js" data-auto defer>, it
// reports the page view of any page by itself; watch pages are left to
// watch.js, which opens their session with the video.
(function () {
  "use strict";
  const auto = document.currentScript && document.currentScript.hasAttribute("data-auto");
  if (window.BlueprintAnalytics) return;
  const endpoint = "/api/v1/analytics/events";

  function randomID() {
    const a = new Uint8Array(12);
    (window.crypto || window.msCrypto).getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function Tracker(session, heartbeatSeconds, maxBatch) {
    this.session = session;
    this.heartbeatSeconds = heartbeatSeconds;
    this.maxBatch = Math.min(maxBatch || 100, 100);
    this.seq = 0;
    this.queue = [];
    this.pending = null; // the batch in flight or waiting for a retry
    this.backoff = 1000;
    const self = this;
    this.timer = setInterval(function () { self.flush(); }, heartbeatSeconds * 1000);
    window.addEventListener("pagehide", function () { self.beacon(); });
    document.addEventListener("visibilitychange", function () { if (document.visibilityState === "hidden") self.beacon(); });
  }
  Tracker.prototype.send = function (ev) {
    if (!this.session) return;
    this.seq += 1;
    ev.seq = this.seq;
    ev.t = Date.now();
    this.queue.push(ev);
    if (this.queue.length >= 20) this.flush();
  };
  Tracker.prototype.flush = function () {
    if (this.pending || this.queue.length === 0 || !this.session) return;
    this.pending = { batch_id: randomID(), session: this.session, events: this.queue.splice(0, this.maxBatch) };
    this.post();
  };
  Tracker.prototype.post = function () {
    const self = this;
    const body = JSON.stringify(this.pending);
    fetch(endpoint, { method: "POST", credentials: "same-origin", keepalive: body.length < 60000, headers: { "Content-Type": "application/json" }, body: body })
      .then(function (r) {
        if (r.status === 202 || (r.status >= 400 && r.status < 500 && r.status !== 429)) {
          if (r.status !== 202) r.text().then(function (t) { console.warn("analytics batch refused:", r.status, t); });
          self.pending = null;
          self.backoff = 1000;
          if (self.queue.length > 0) self.flush();
          return;
        }
        throw new Error("status " + r.status);
      })
      .catch(function () {
        // Same batch, same batch_id: stored once whatever happened to the last try.
        setTimeout(function () { self.post(); }, self.backoff);
        self.backoff = Math.min(self.backoff * 2, 30000);
      });
  };
  Tracker.prototype.beacon = function () {
    if (!navigator.sendBeacon || !this.session) return;
    if (this.pending) {
      navigator.sendBeacon(endpoint, JSON.stringify(this.pending));
    }
    if (this.queue.length > 0) {
      navigator.sendBeacon(endpoint, JSON.stringify({ batch_id: randomID(), session: this.session, events: this.queue.splice(0, this.maxBatch) }));
    }
  };

  // start opens the page's view session and reports the page view.
  function start(opts) {
    opts = opts || {};
    return fetch("/api/v1/analytics/sessions", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(opts.videoId ? { video_id: String(opts.videoId) } : {})
    }).then(function (r) { return r.ok ? r.json() : { tracking: false }; })
      .catch(function () { return { tracking: false }; })
      .then(function (s) {
        const t = new Tracker(s.tracking ? s.session : "", s.heartbeat_seconds || 10, s.max_batch_events);
        t.send({ type: "page_view", path: location.pathname, referrer: document.referrer });
        return t;
      });
  }
  window.BlueprintAnalytics = { start: start };
  if (auto) {
    const go = function () { if (!document.querySelector("article.watch")) start({}); };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", go); else go();
  }
})();
