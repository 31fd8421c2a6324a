// Upload page: a resumable tus upload with a progress bar. tus-js-client
// remembers each file's upload URL in localStorage (its fingerprint is the
// file's name, type, size and mtime), so picking the same file after a
// reload resumes instead of starting over.
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  const fileInput = document.getElementById("file");
  const bar = document.getElementById("bar");
  const pct = document.getElementById("pct");
  const speed = document.getElementById("speed");
  const status = document.getElementById("status");
  const pause = document.getElementById("pause");
  const start = document.getElementById("start");
  let upload = null;
  let paused = false;

  function say(msg, isError) {
    status.textContent = msg;
    status.className = isError ? "error" : "";
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    const file = fileInput.files[0];
    if (!file) { say("Choose a file first.", true); return; }
    if (file.size === 0) { say("That file is empty.", true); return; }
    let lastBytes = 0, lastTime = Date.now();
    upload = new tus.Upload(file, {
      endpoint: "/api/v1/uploads/",
      chunkSize: 8 * 1024 * 1024,
      retryDelays: [0, 1000, 3000, 5000, 10000],
      removeFingerprintOnSuccess: true,
      metadata: {
        filename: file.name,
        filetype: file.type,
        title: document.getElementById("title").value,
        description: document.getElementById("description").value,
      },
      onError: function (err) {
        let msg = err.message || String(err);
        if (err.originalResponse) {
          const body = err.originalResponse.getBody();
          if (body) msg = body.trim();
        }
        say("Upload failed: " + msg, true);
        start.disabled = false;
        pause.hidden = true;
      },
      onProgress: function (sent, total) {
        const p = total ? Math.floor(sent * 100 / total) : 0;
        bar.value = p;
        pct.textContent = p + "%";
        const now = Date.now();
        if (now - lastTime > 1000) {
          const mbs = (sent - lastBytes) / (now - lastTime) / 1024;
          speed.textContent = "· " + mbs.toFixed(1) + " MB/s";
          lastBytes = sent; lastTime = now;
        }
      },
      onSuccess: function () {
        bar.value = 100; pct.textContent = "100%";
        const id = upload.url.split("/").filter(Boolean).pop();
        say("Uploaded. Processing starts now…");
        fetch("/api/v1/uploads/" + id, { credentials: "same-origin" })
          .then(function (r) { return r.json(); })
          .then(function (u) { window.location = "/watch/" + u.video_id; })
          .catch(function () { say("Uploaded; see the home page for processing status."); });
      },
    });
    upload.findPreviousUploads().then(function (previous) {
      if (previous.length) {
        upload.resumeFromPreviousUpload(previous[0]);
        say("Resuming an earlier upload of this file…");
      } else {
        say("Uploading…");
      }
      document.getElementById("progress").hidden = false;
      start.disabled = true;
      pause.hidden = false;
      upload.start();
    });
  });

  pause.addEventListener("click", function () {
    if (!upload) return;
    if (paused) { upload.start(); pause.textContent = "Pause"; say("Uploading…"); }
    else { upload.abort(); pause.textContent = "Resume"; say("Paused."); }
    paused = !paused;
  });
})();
