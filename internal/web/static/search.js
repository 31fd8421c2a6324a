// Search as you type: debounced requests to /api/v1/search, the newest
// answer wins (older requests are aborted), results rendered with DOM
// nodes (never innerHTML), keyboard navigation, the URL kept in sync.
(function () {
  "use strict";
  var form = document.getElementById("search-form");
  var input = document.getElementById("q");
  var list = document.getElementById("results");
  var status = document.getElementById("search-status");
  var pager = document.getElementById("pager");
  if (!form || !input || !list) return;

  var DEBOUNCE_MS = 150;
  var timer = 0;
  var inflight = null;
  var seq = 0;
  var state = { q: "", type: "videos", page: 1, more: false };

  function currentType() {
    var r = form.querySelector("input[name=type]:checked");
    return r ? r.value : "videos";
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function when(iso) {
    var d = new Date(iso);
    if (isNaN(d)) return "";
    var days = Math.floor((Date.now() - d.getTime()) / 86400000);
    if (days < 1) return "today";
    if (days < 2) return "yesterday";
    if (days < 30) return days + " days ago";
    return d.toLocaleDateString();
  }

  function renderHit(h) {
    var li = el("li");
    var a = el("a", "hit");
    a.href = h.url;
    if (h.type === "creator") {
      var badge = el("span", "creator-badge", "@");
      badge.setAttribute("aria-hidden", "true");
      a.appendChild(badge);
    } else if (h.thumbnail_url) {
      var img = el("img", "thumb");
      img.src = h.thumbnail_url;
      img.alt = "";
      img.loading = "lazy";
      a.appendChild(img);
    } else {
      a.appendChild(el("span", "thumb"));
    }
    var body = el("span");
    body.appendChild(el("span", "title", h.title));
    var meta = h.type === "creator" ? "creator" : h.creator + " · " + when(h.created_at);
    if (h.popularity) meta += " · " + h.popularity + " ♥";
    body.appendChild(el("span", "meta", meta));
    if (h.snippet) body.appendChild(el("span", "snippet", h.snippet));
    (h.tags || []).forEach(function (t) { body.appendChild(el("span", "tag", "#" + t)); });
    a.appendChild(body);
    li.appendChild(a);
    return li;
  }

  function setStatus(text, isError) {
    status.textContent = "";
    if (isError) status.appendChild(el("span", "error", text));
    else status.textContent = text;
  }

  function renderPager() {
    pager.textContent = "";
    if (!state.more) return;
    var b = el("button", "link", "More results");
    b.type = "button";
    b.addEventListener("click", function () { run(state.page + 1, true); });
    pager.appendChild(b);
  }

  function syncURL() {
    var u = new URL(window.location.href);
    u.search = "";
    if (state.q) {
      u.searchParams.set("q", state.q);
      if (state.type !== "videos") u.searchParams.set("type", state.type);
    }
    history.replaceState(null, "", u.pathname + u.search);
  }

  function run(page, append) {
    var q = input.value;
    var type = currentType();
    if (inflight) inflight.abort();
    inflight = null;
    if (q.trim() === "") {
      state = { q: "", type: type, page: 1, more: false };
      list.textContent = "";
      pager.textContent = "";
      setStatus("", false);
      syncURL();
      return;
    }
    var ctl = typeof AbortController === "function" ? new AbortController() : null;
    inflight = ctl;
    var mine = ++seq;
    var params = new URLSearchParams({ q: q, type: type, page: String(page) });
    fetch("/api/v1/search?" + params.toString(), {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      signal: ctl ? ctl.signal : undefined
    }).then(function (resp) {
      return resp.json().then(function (body) { return { ok: resp.ok, body: body }; });
    }).then(function (r) {
      if (mine !== seq) return; // a newer search started
      inflight = null;
      if (!r.ok) {
        setStatus(r.body && r.body.error ? r.body.error : "Search failed.", true);
        if (!append) list.textContent = "";
        state.more = false;
        renderPager();
        return;
      }
      var res = r.body;
      state = { q: q, type: type, page: res.page, more: res.more };
      if (!append) list.textContent = "";
      res.hits.forEach(function (h) { list.appendChild(renderHit(h)); });
      var n = res.total;
      setStatus(n === 0 ? "No results for “" + q + "”." : n + (n === 1 ? " result" : " results"), false);
      renderPager();
      syncURL();
    }).catch(function (err) {
      if (err && err.name === "AbortError") return;
      if (mine === seq) setStatus("Search failed: " + err, true);
    });
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(function () { run(1, false); }, DEBOUNCE_MS);
  }

  function links() { return Array.prototype.slice.call(list.querySelectorAll("a.hit")); }

  input.addEventListener("input", schedule);
  form.addEventListener("change", function (e) {
    if (e.target && e.target.name === "type") { clearTimeout(timer); run(1, false); }
  });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    clearTimeout(timer);
    run(1, false);
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "ArrowDown") {
      var ls = links();
      if (ls.length) { e.preventDefault(); ls[0].focus(); }
    } else if (e.key === "Escape") {
      if (input.value !== "") { e.preventDefault(); input.value = ""; clearTimeout(timer); run(1, false); }
    }
  });
  list.addEventListener("keydown", function (e) {
    if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
    var ls = links();
    var i = ls.indexOf(document.activeElement);
    if (i < 0) return;
    e.preventDefault();
    if (e.key === "ArrowDown" && i + 1 < ls.length) ls[i + 1].focus();
    if (e.key === "ArrowUp") (i === 0 ? input : ls[i - 1]).focus();
  });
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    var typing = t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable);
    if (e.key === "/" && !typing && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      input.focus();
      input.select();
    }
  });

  // The server rendered the first page of results for ?q=; from here on
  // the script drives paging.
  state.q = input.value;
  state.type = currentType();
  var startPage = parseInt(new URL(window.location.href).searchParams.get("page") || "1", 10);
  if (startPage === 1 && document.getElementById("next-page")) {
    state.more = true;
    renderPager();
  }
})();
