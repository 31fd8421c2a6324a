// bell.js — the notification bell, loaded on every page for logged-in users.
//
// It opens a server-sent-event stream to /api/v1/notifications/stream (held
// by one frontend server; the dispatcher routes the user's notifications to
// it), keeps #bell-count at the live unread count, shows a toast for each new
// notification and, on the notifications page, adds it to the list. When the
// connection drops the browser reconnects by itself and sends the last event
// ID, so missed notifications are replayed from the inbox; when the server
// refuses the stream (429/503 while busy or restarting) this script
// reconnects with backoff, and it also reconnects when heartbeats stop.
(function () {
  'use strict';
  var countEl = document.getElementById('bell-count');
  if (!countEl || !window.EventSource) return;

  var es = null;
  var lastId = '';
  var backoff = 1000;
  var retryTimer = null;
  var watchdog = null;
  var heartbeat = 30000;
  var seen = {};

  function setCount(n) {
    countEl.textContent = n > 0 ? (n > 99 ? '99+' : String(n)) : '';
    countEl.dataset.count = String(n);
    var u = document.getElementById('unread-count');
    if (u) u.textContent = String(n);
  }

  function styles() {
    if (document.getElementById('bp-toast-style')) return;
    var s = document.createElement('style');
    s.id = 'bp-toast-style';
    s.textContent =
      '#bp-toasts{position:fixed;right:1rem;bottom:1rem;display:flex;flex-direction:column;gap:.5rem;z-index:1000;max-width:22rem}' +
      '.bp-toast{background:#1d1d1f;color:#fff;border-radius:8px;padding:.7rem 1rem;box-shadow:0 4px 16px rgba(0,0,0,.25);font-size:.95rem}' +
      '.bp-toast a{color:#9db4ff}.bp-toast .t{font-weight:600}';
    document.head.appendChild(s);
  }

  function toast(n) {
    styles();
    var box = document.getElementById('bp-toasts');
    if (!box) {
      box = document.createElement('div');
      box.id = 'bp-toasts';
      box.setAttribute('role', 'status');
      box.setAttribute('aria-live', 'polite');
      document.body.appendChild(box);
    }
    var el = document.createElement('div');
    el.className = 'bp-toast';
    el.dataset.id = n.id;
    var t = document.createElement(n.url ? 'a' : 'div');
    t.className = 't';
    t.textContent = n.title;
    if (n.url) t.href = n.url;
    var body = document.createElement('div');
    body.textContent = n.text;
    el.appendChild(t);
    el.appendChild(body);
    box.appendChild(el);
    setTimeout(function () { el.remove(); }, 8000);
  }

  function prepend(n) {
    var list = document.getElementById('notification-list');
    if (!list || list.querySelector('li[data-id="' + n.id + '"]')) return;
    var empty = document.getElementById('notifications-empty');
    if (empty) empty.remove();
    var li = document.createElement('li');
    li.className = 'unread';
    li.dataset.id = n.id;
    var div = document.createElement('div');
    var t = document.createElement(n.url ? 'a' : 'span');
    t.className = 'n-title';
    t.textContent = n.title;
    if (n.url) t.href = n.url;
    var text = document.createElement('div');
    text.className = 'n-text';
    text.textContent = n.text;
    var meta = document.createElement('div');
    meta.className = 'meta';
    meta.textContent = 'just now';
    div.appendChild(t);
    div.appendChild(text);
    div.appendChild(meta);
    li.appendChild(div);
    list.insertBefore(li, list.firstChild);
  }

  function alive() {
    clearTimeout(watchdog);
    // Three missed heartbeats: the connection died without telling us.
    watchdog = setTimeout(function () { reconnect(); }, 3 * heartbeat + 5000);
  }

  function reconnect() {
    if (es) es.close();
    es = null;
    clearTimeout(watchdog);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 60000);
  }

  function connect() {
    var url = '/api/v1/notifications/stream';
    if (lastId) url += '?last_event_id=' + encodeURIComponent(lastId);
    es = new EventSource(url);
    es.addEventListener('hello', function (e) {
      backoff = 1000;
      try { heartbeat = JSON.parse(e.data).heartbeat_ms || heartbeat; } catch (err) { /* keep the default */ }
      document.documentElement.dataset.bell = 'connected';
      alive();
    });
    es.addEventListener('ping', alive);
    es.addEventListener('unread', function (e) {
      alive();
      setCount(JSON.parse(e.data).unread);
    });
    es.addEventListener('notification', function (e) {
      alive();
      if (e.lastEventId) lastId = e.lastEventId;
      var d = JSON.parse(e.data);
      setCount(d.unread);
      var n = d.notification;
      if (seen[n.id]) return;
      seen[n.id] = true;
      toast(n);
      prepend(n);
      window.dispatchEvent(new CustomEvent('bp:notification', { detail: n }));
    });
    es.onerror = function () {
      document.documentElement.dataset.bell = 'reconnecting';
      // CONNECTING: the browser retries by itself, with Last-Event-ID.
      // CLOSED: the server refused the stream; retry by hand.
      if (es && es.readyState === EventSource.CLOSED) reconnect();
    };
  }

  window.addEventListener('pagehide', function () { if (es) es.close(); });
  connect();

  // Web Push, on the notifications page.
  var on = document.getElementById('push-enable');
  var off = document.getElementById('push-disable');
  var status = document.getElementById('push-status');
  function say(s) { if (status) status.textContent = s; }
  function keyBytes(b64) {
    var s = (b64 + '==='.slice((b64.length + 3) % 4)).replace(/-/g, '+').replace(/_/g, '/');
    var raw = atob(s);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }
  if (on && !('serviceWorker' in navigator && 'PushManager' in window)) {
    on.disabled = true;
    say('This browser does not support push notifications.');
  } else if (on) {
    on.addEventListener('click', async function () {
      try {
        var perm = await Notification.requestPermission();
        if (perm !== 'granted') { say('Notifications are blocked for this site in the browser.'); return; }
        var reg = await navigator.serviceWorker.register('/static/push-sw.js');
        var k = await (await fetch('/api/v1/push/key')).json();
        var sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(k.key) });
        var r = await fetch('/api/v1/push/subscriptions', {
          method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(sub),
        });
        say(r.ok ? 'Push is on in this browser.' : 'Could not turn push on: ' + (await r.json()).error);
      } catch (err) {
        say('Could not turn push on: ' + err.message);
      }
    });
    off.addEventListener('click', async function () {
      try {
        var reg = await navigator.serviceWorker.getRegistration('/static/push-sw.js');
        var sub = reg && await reg.pushManager.getSubscription();
        if (!sub) { say('Push is not on in this browser.'); return; }
        await fetch('/api/v1/push/subscriptions', {
          method: 'DELETE', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ endpoint: sub.endpoint }),
        });
        await sub.unsubscribe();
        say('Push is off in this browser.');
      } catch (err) {
        say('Could not turn push off: ' + err.message);
      }
    });
  }
})();
