// push-sw.js — the service worker that shows Blueprint's Web Push messages.
// The notification service sends {id, type, title, body, url}, encrypted for
// this browser (RFC 8291); the browser decrypts it before this runs.
self.addEventListener('push', function (event) {
  var d = {};
  try { d = event.data ? event.data.json() : {}; } catch (err) { d = { title: 'Blueprint', body: event.data ? event.data.text() : '' }; }
  event.waitUntil(self.registration.showNotification(d.title || 'Blueprint', {
    body: d.body || '',
    tag: d.id ? 'bp-' + d.id : undefined,
    data: { url: d.url || '/notifications' },
  }));
});

self.addEventListener('notificationclick', function (event) {
  event.notification.close();
  var url = (event.notification.data && event.notification.data.url) || '/notifications';
  event.waitUntil(self.clients.openWindow(url));
});
