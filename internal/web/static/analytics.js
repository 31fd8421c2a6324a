// Analytics tracker: one view session per page load (a signed token from
// POST /api/v1/analytics/sessions), events numbered 1, 2, 3… and sent in
// order in batches to POST /api/v1/analytics/events.
//
//   BlueprintAnalytics.start({videoId: "123"}).then(function (t) {
//     t.send({type: "view_start", pos: 0});
//   });
//
// Nothing the page has recorded is dropped because the page goes away:
//
//   - Events are kept, in order, in an outbox per view session until a 202
//     acknowledges them, and every outbox is mirrored to sessionStorage
//     (keys "bp_analytics:<page>:<n>", at most 500 events each and 20
//     outboxes per tab; past that the oldest go).
//   - Events recorded before the view session arrives wait in the outbox
//     (start() resolves when the session is there or, at the latest, when
//     the page is hidden, so callers hand over what they hold in time).
//   - When the page is hidden (visibilitychange, pagehide) each outbox with
//     a session sends all it holds as one batch with navigator.sendBeacon
//     (or fetch keepalive), from its oldest unacknowledged event.
//   - The next page load of the tab adopts the outboxes left in
//     sessionStorage and sends them again; one without a session opens a
//     session for its video first.
//
// Re-sending is harmless: a batch is retried with the same batch_id (the
// stream stores it once), a batch ID is never reused for more events than
// it first carried, and the server applies an event only if its seq is
// above the session's highest applied one, so (session, seq) is each
// event's identity. Batches of one session go out from the oldest
// unacknowledged event, so no later event is applied before an earlier one
// has been stored.
//
// Included as <script src="/static/analytics.js" data-auto defer>, it
// reports the page view of any page by itself; watch pages are left to
// watch.js, which opens their session with the video.
(function () {
  "use strict";
  const auto = document.currentScript && document.currentScript.hasAttribute("data-auto");
  if (window.BlueprintAnalytics) return;
  const endpoint = "/api/v1/analytics/events";
  const prefix = "bp_analytics:"; // sessionStorage keys of outboxes
  const cfgKey = "bp_analytics_cfg"; // the last session answer's settings
  const maxStored = 500; // events kept per outbox
  const maxOutboxes = 20; // outboxes kept per tab
  const maxBody = 60000; // sendBeacon and keepalive allow 64 KiB in flight

  function randomID() {
    const a = new Uint8Array(12);
    (window.crypto || window.msCrypto).getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  const store = (function () {
    try {
      const s = window.sessionStorage;
      s.setItem(prefix + "probe", "1");
      s.removeItem(prefix + "probe");
      return s;
    } catch (e) {
      return null; // storage off: the outboxes live in memory only
    }
  })();
  const page = randomID();
  let boxCount = 0;
  const boxes = []; // this page's outboxes: its own sessions and adopted ones
  const trackers = []; // this page's trackers, each with its current outbox
  const cfg = (function () {
    try { return JSON.parse(store.getItem(cfgKey)) || {}; } catch (e) { return {}; }
  })();
  function heartbeatSeconds() { return cfg.heartbeat_seconds || 10; }
  function serverMax() { return cfg.max_batch_events || maxStored; }

  // Outbox holds one view session's unacknowledged events in seq order.
  function Outbox(state) {
    boxCount += 1;
    this.key = prefix + page + ":" + boxCount;
    this.video = state.v || ""; // the session's video, for a session opened later
    this.session = state.s || ""; // the token; "" until the session arrives
    this.seq = state.q || 0; // the last seq given out
    this.events = state.e || [];
    this.batch = state.b || null; // {id, upto}: the batch being sent, re-sent with the same id
    this.created = state.c || Date.now();
    this.off = false; // not tracked (a bot) or retired: nothing is kept or sent
    this.retired = false; // a later page adopted this outbox
    this.stored = false; // this.key is in sessionStorage
    this.inflight = false;
    this.opening = false;
    this.backoff = 1000;
    this.retry = 0;
    this.beaconed = ""; // the ID of the batch last sent on hide
  }
  Outbox.prototype.save = function () {
    if (!store) return;
    if (this.off || this.events.length === 0) {
      if (this.stored) store.removeItem(this.key);
      this.stored = false;
      return;
    }
    if (this.events.length > maxStored) this.events.splice(0, this.events.length - maxStored);
    try {
      store.setItem(this.key, JSON.stringify({ v: this.video, s: this.session, q: this.seq, e: this.events, b: this.batch, c: this.created }));
      this.stored = true;
    } catch (e) {
      // Over the storage quota: the events stay in memory.
    }
  };
  Outbox.prototype.add = function (ev) {
    if (this.off) return;
    this.seq += 1;
    ev.seq = this.seq;
    ev.t = Date.now();
    this.events.push(ev);
    this.save();
    if (this.events.length >= 20) this.flush();
  };
  Outbox.prototype.body = function (batch) {
    const evs = this.events.filter(function (e) { return e.seq <= batch.upto; });
    return JSON.stringify({ batch_id: batch.id, session: this.session, events: evs });
  };
  // acked drops the events of a stored batch.
  Outbox.prototype.acked = function (batch) {
    this.events = this.events.filter(function (e) { return e.seq > batch.upto; });
    if (this.batch && this.batch.upto <= batch.upto) this.batch = null;
    this.save();
  };
  Outbox.prototype.flush = function () {
    if (this.off || this.inflight || !this.session || this.events.length === 0) return;
    if (!this.batch) {
      const n = Math.min(this.events.length, 100, serverMax());
      this.batch = { id: randomID(), upto: this.events[n - 1].seq };
      this.save();
    }
    this.post();
  };
  Outbox.prototype.post = function () {
    const self = this, batch = this.batch;
    const body = this.body(batch);
    this.inflight = true;
    clearTimeout(this.retry);
    fetch(endpoint, { method: "POST", credentials: "same-origin", keepalive: body.length < maxBody, headers: { "Content-Type": "application/json" }, body: body })
      .then(function (r) {
        if (r.status === 202 || (r.status >= 400 && r.status < 500 && r.status !== 429)) {
          if (r.status !== 202) r.text().then(function (t) { console.warn("analytics batch refused:", r.status, t); });
          self.inflight = false;
          self.backoff = 1000;
          self.acked(batch);
          self.flush();
          return;
        }
        throw new Error("status " + r.status);
      })
      .catch(function () {
        // The same batch again, same batch_id: stored once whatever
        // happened to the last try.
        self.inflight = false;
        self.retry = setTimeout(function () { self.flush(); }, self.backoff);
        self.backoff = Math.min(self.backoff * 2, 30000);
      });
  };
  // leave sends everything the outbox holds in one batch as the page is
  // hidden; the outbox keeps it until a 202, so the next page load sends
  // it again if this one does not arrive.
  Outbox.prototype.leave = function () {
    if (this.off || this.events.length === 0) return;
    if (!this.session) { this.save(); return; }
    let n = Math.min(this.events.length, maxStored, serverMax());
    const last = this.events[n - 1].seq;
    if (!this.batch || this.batch.upto < last) {
      // A new ID: an ID never carries more events than it first did.
      this.batch = { id: randomID(), upto: last };
    }
    let body = this.body(this.batch);
    while (body.length >= maxBody && n > 1) {
      n = Math.max(1, Math.floor(n / 2));
      this.batch = { id: randomID(), upto: this.events[n - 1].seq };
      body = this.body(this.batch);
    }
    this.save();
    if (this.beaconed === this.batch.id) return; // visibilitychange, then pagehide
    this.beaconed = this.batch.id;
    let sent = false;
    try { sent = !!(navigator.sendBeacon && navigator.sendBeacon(endpoint, body)); } catch (e) { sent = false; }
    if (!sent && body.length < maxBody) {
      try {
        fetch(endpoint, { method: "POST", credentials: "same-origin", keepalive: true, headers: { "Content-Type": "application/json" }, body: body }).catch(function () {});
      } catch (e) {
        // Left for the next page load.
      }
    }
  };

  // Session requests go one at a time: the first answer of a browser
  // without a viewer cookie sets it, and the next requests carry it, so
  // the sessions of one browser have one viewer.
  let sessionChain = Promise.resolve();

  // openSession asks for box's view session; onReady runs once it is
  // known (or tracking is off).
  function openSession(box, onReady) {
    if (box.opening || box.session || box.off) return;
    box.opening = true;
    const asked = sessionChain.then(function () {
      return fetch("/api/v1/analytics/sessions", {
        method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(box.video ? { video_id: String(box.video) } : {})
      });
    });
    sessionChain = asked.then(function () {}, function () {});
    asked.then(function (r) {
      if (r.status >= 500 || r.status === 429) throw new Error("status " + r.status);
      return r.ok ? r.json() : { tracking: false };
    }).then(function (s) {
      box.opening = false;
      if (s.heartbeat_seconds) {
        cfg.heartbeat_seconds = s.heartbeat_seconds;
        cfg.max_batch_events = s.max_batch_events;
        try { store && store.setItem(cfgKey, JSON.stringify(cfg)); } catch (e) { /* quota */ }
      }
      if (!s.tracking || !s.session) {
        box.off = true;
        box.events = [];
        box.save();
      } else {
        box.session = s.session;
        box.save();
        box.flush();
      }
      if (onReady) onReady();
    }).catch(function () {
      // No answer: the events stay in the outbox; ask again later.
      box.opening = false;
      setTimeout(function () { openSession(box, onReady); }, box.backoff);
      box.backoff = Math.min(box.backoff * 2, 30000);
    });
  }

  // adopt takes over the outboxes that earlier pages of this tab left in
  // sessionStorage (a key belongs to the page whose ID it carries; taking
  // one moves it under this page's ID).
  function adopt() {
    if (!store) return;
    const found = [];
    for (let i = 0; i < store.length; i++) {
      const k = store.key(i);
      if (k && k.indexOf(prefix) === 0 && k.indexOf(prefix + page + ":") !== 0) found.push(k);
    }
    const states = [];
    found.forEach(function (k) {
      let st = null;
      try { st = JSON.parse(store.getItem(k)); } catch (e) { st = null; }
      store.removeItem(k);
      if (st && Array.isArray(st.e) && st.e.length > 0) states.push(st);
    });
    states.sort(function (a, b) { return (b.c || 0) - (a.c || 0); });
    states.slice(0, maxOutboxes).forEach(function (st) {
      const box = new Outbox(st);
      box.save();
      boxes.push(box);
      if (box.session) box.flush(); else openSession(box, null);
    });
  }

  // reclaim runs when a page comes back from the back/forward cache. Its
  // outboxes that a later page adopted are that page's now: they are
  // retired here, and a tracker whose outbox went continues in a new view
  // session, so no two pages ever send events of one session.
  function reclaim() {
    boxes.forEach(function (b) {
      if (b.stored && store && store.getItem(b.key) === null) {
        b.off = b.retired = true;
        b.events = [];
        b.batch = null;
        b.stored = false;
      }
    });
    trackers.forEach(function (t) {
      if (!t.box.retired) return;
      t.box = new Outbox({ v: t.box.video });
      boxes.push(t.box);
    });
    adopt();
    boxes.forEach(function (b) { if (b.session) b.flush(); else openSession(b, null); });
  }

  let listening = false;
  const onHide = []; // start() promises that resolve when the page is hidden
  function hidden() {
    onHide.splice(0).forEach(function (f) { f(); });
    boxes.forEach(function (b) { b.leave(); });
  }
  // listen installs the page-wide handlers on the first start(), after the
  // caller's own handlers, so a heartbeat the caller records on hide is in
  // the outbox before it leaves.
  function listen() {
    if (listening) return;
    listening = true;
    window.addEventListener("pagehide", hidden);
    document.addEventListener("visibilitychange", function () { if (document.visibilityState === "hidden") hidden(); });
    window.addEventListener("pageshow", function (e) { if (e.persisted) reclaim(); });
    setInterval(function () { boxes.forEach(function (b) { b.flush(); }); }, heartbeatSeconds() * 1000);
  }

  function Tracker(box) {
    this.box = box;
    this.heartbeatSeconds = heartbeatSeconds();
  }
  // send records one event of the page's view session.
  Tracker.prototype.send = function (ev) { this.box.add(ev); };

  // start opens the page's view session and reports the page view. The
  // tracker takes events at once; the promise resolves when the session
  // is known or, at the latest, when the page is hidden.
  function start(opts) {
    opts = opts || {};
    const box = new Outbox({ v: opts.videoId ? String(opts.videoId) : "" });
    boxes.push(box);
    const t = new Tracker(box);
    trackers.push(t);
    adopt();
    listen();
    t.send({ type: "page_view", path: location.pathname, referrer: document.referrer });
    return new Promise(function (resolve) {
      let done = false;
      function ready() {
        if (done) return;
        done = true;
        t.heartbeatSeconds = heartbeatSeconds();
        resolve(t);
      }
      onHide.push(ready);
      openSession(box, ready);
    });
  }
  window.BlueprintAnalytics = { start: start };
  if (auto) {
    const go = function () { if (!document.querySelector("article.watch")) start({}); };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", go); else go();
  }
})();
