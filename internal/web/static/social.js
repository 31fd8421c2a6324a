// Watch page social bar: like button, follow button, comments.
(function () {
  "use strict";
  const article = document.querySelector("article.watch");
  const bar = document.getElementById("social");
  if (!article || !bar) return;
  const id = article.dataset.videoId;
  const creator = bar.dataset.creatorId;
  const loggedIn = bar.dataset.loggedIn === "1";
  const likeBtn = document.getElementById("like");
  const likeCount = document.getElementById("like-count");
  const followBtn = document.getElementById("follow");
  const followers = document.getElementById("followers");
  const list = document.getElementById("comment-list");
  const count = document.getElementById("comment-count");
  const form = document.getElementById("comment-form");

  async function api(method, path, body) {
    const r = await fetch(path, {
      method: method, credentials: "same-origin",
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = r.status === 204 ? {} : await r.json().catch(function () { return {}; });
    if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
    return data;
  }

  function showFollow(st, mine) {
    followers.textContent = st.followers + (st.followers === 1 ? " follower" : " followers");
    if (!loggedIn || mine) return;
    followBtn.hidden = false;
    followBtn.dataset.followed = st.followed_by_me ? "1" : "";
    followBtn.textContent = st.followed_by_me ? "Following ✓" : followBtn.textContent.replace(/^Following ✓$/, "Follow");
    followBtn.setAttribute("aria-pressed", st.followed_by_me ? "true" : "false");
  }

  function addComment(c, top) {
    const li = document.createElement("li");
    li.dataset.commentId = c.id;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = c.username;
    const body = document.createElement("span");
    body.className = "body";
    body.textContent = c.body;
    li.append(who, body);
    if (top) list.prepend(li); else list.append(li);
  }

  api("GET", "/api/v1/videos/" + id + "/social").then(function (s) {
    likeCount.textContent = s.likes;
    likeBtn.setAttribute("aria-pressed", s.liked ? "true" : "false");
    count.textContent = s.comments;
    const label = followBtn.textContent;
    followBtn.dataset.label = label;
    showFollow(s.creator, s.mine);
  }).catch(function () {});

  api("GET", "/api/v1/videos/" + id + "/comments?limit=50").then(function (d) {
    d.comments.forEach(function (c) { addComment(c, false); });
  }).catch(function () {});

  likeBtn.addEventListener("click", function () {
    if (!loggedIn) { location.href = "/login?next=" + encodeURIComponent(location.pathname); return; }
    const liked = likeBtn.getAttribute("aria-pressed") === "true";
    api(liked ? "DELETE" : "POST", "/api/v1/videos/" + id + "/like").then(function (d) {
      likeCount.textContent = d.likes;
      likeBtn.setAttribute("aria-pressed", d.liked ? "true" : "false");
    }).catch(function () {});
  });

  followBtn.addEventListener("click", function () {
    const followed = followBtn.dataset.followed === "1";
    api(followed ? "DELETE" : "POST", "/api/v1/users/" + creator + "/follow").then(function (st) {
      followBtn.textContent = st.followed_by_me ? "Following ✓" : followBtn.dataset.label;
      showFollow(st, false);
    }).catch(function () {});
  });

  if (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      const text = document.getElementById("comment-body");
      const err = document.getElementById("comment-error");
      err.textContent = "";
      api("POST", "/api/v1/videos/" + id + "/comments", { body: text.value }).then(function (c) {
        addComment(c, true);
        count.textContent = String(Number(count.textContent) + 1);
        text.value = "";
      }).catch(function (e) { err.textContent = e.message; });
    });
  }
})();
