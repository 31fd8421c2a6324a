// Wallet page: tips, memberships, balances, payouts and webhook endpoints.
// Every mutating call carries an Idempotency-Key made once per user action
// and reused on every retry, so a flaky network can never pay twice.
// Card data is never typed into this page: the test provider uses named
// test cards; Stripe uses its own hosted fields (Payment Element).
(function () {
  "use strict";
  const root = document.getElementById("wallet");
  if (!root) return;
  const cfg = JSON.parse(root.dataset.config);
  const exps = {};
  cfg.currencies.forEach(function (c) { exps[c.code] = c.exponent; });
  const status = document.getElementById("pay-status");

  function say(msg, isError) {
    status.textContent = msg;
    status.className = isError ? "error" : "";
  }

  // toMinor turns "12.34" into 1234 for a 2-digit currency, by string
  // arithmetic (no floating point); null when it is not an amount.
  function toMinor(text, cur) {
    const exp = exps[cur] === undefined ? 2 : exps[cur];
    const m = /^\s*(\d{1,12})(?:\.(\d*))?\s*$/.exec(text);
    if (!m) return null;
    const frac = m[2] || "";
    if (frac.length > exp) return null;
    return parseInt(m[1] + frac.padEnd(exp, "0"), 10);
  }

  function money(amount, cur) {
    const exp = exps[cur] === undefined ? 2 : exps[cur];
    const neg = amount < 0;
    let s = String(Math.abs(amount));
    if (exp > 0) {
      s = s.padStart(exp + 1, "0");
      s = s.slice(0, s.length - exp) + "." + s.slice(s.length - exp);
    }
    return (neg ? "-" : "") + s + " " + cur;
  }

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.from(b, function (x) { return x.toString(16).padStart(2, "0"); }).join("");
  }

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  // mutate sends a mutating call with one idempotency key, retrying
  // network failures and 5xx answers with the same key.
  async function mutate(method, url, body) {
    const key = newKey();
    let lastErr = null;
    for (let attempt = 0; attempt < 5; attempt++) {
      if (attempt > 0) await sleep(300 * Math.pow(2, attempt));
      try {
        const resp = await fetch(url, {
          method: method,
          headers: { "Content-Type": "application/json", "Idempotency-Key": key },
          body: body === undefined ? undefined : JSON.stringify(body),
          credentials: "same-origin",
        });
        const data = await resp.json().catch(function () { return {}; });
        if (resp.status >= 500) { lastErr = data.error || ("server error " + resp.status); continue; }
        if (!resp.ok) throw new Error(data.error || ("request failed: " + resp.status));
        return data;
      } catch (e) {
        if (e instanceof TypeError) { lastErr = "network error"; continue; }
        throw e;
      }
    }
    throw new Error((lastErr || "no answer") + "; try again");
  }

  async function get(url) {
    const resp = await fetch(url, { credentials: "same-origin" });
    const data = await resp.json().catch(function () { return {}; });
    if (!resp.ok) throw new Error(data.error || ("request failed: " + resp.status));
    return data;
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function when(iso) { return iso ? new Date(iso).toLocaleString() : ""; }

  function methodOf(form) {
    const sel = form.querySelector(".pay-method");
    return sel ? sel.value : "";
  }

  // ---- paying ----

  let pendingAction = null; // payment waiting for authentication

  async function afterPayment(p) {
    if (p.state === "requires_action") {
      if (cfg.provider === "stripe") return stripePay(p);
      pendingAction = p;
      showAuth(p);
      say("Your bank asks you to confirm this payment.");
      return;
    }
    const verb = {
      succeeded: "Payment succeeded.", processing: "Payment accepted; it is settling.",
      failed: "Payment failed: " + (p.failure_reason || "declined") + ".", canceled: "Payment canceled.",
      pending: "Payment recorded; waiting for the provider.",
    }[p.state] || ("Payment " + p.state + ".");
    say(verb + " " + money(p.amount, p.currency), p.state === "failed");
    refresh();
  }

  function showAuth(p) {
    document.getElementById("auth-summary").textContent = "Pay " + money(p.amount, p.currency) + " (payment " + p.id + ")";
    document.getElementById("authenticate").hidden = false;
  }

  async function answerAuth(approve) {
    if (!pendingAction) return;
    const id = pendingAction.id;
    try {
      const p = await mutate("POST", "/api/v1/payments/" + encodeURIComponent(id) + "/confirm", { approve: approve });
      document.getElementById("authenticate").hidden = true;
      pendingAction = null;
      await afterPayment(p);
    } catch (e) { say(e.message, true); }
  }
  document.getElementById("auth-approve").addEventListener("click", function () { answerAuth(true); });
  document.getElementById("auth-decline").addEventListener("click", function () { answerAuth(false); });

  // stripePay finishes a payment in Stripe's hosted fields.
  async function stripePay(p) {
    if (!window.Stripe || !cfg.publishable_key) { say("Stripe is not available.", true); return; }
    const stripe = window.Stripe(cfg.publishable_key);
    const elements = stripe.elements({ clientSecret: p.client_secret });
    const box = document.getElementById("stripe-box");
    const mountAt = document.getElementById("stripe-element");
    mountAt.textContent = "";
    elements.create("payment").mount(mountAt);
    box.hidden = false;
    const btn = document.getElementById("stripe-pay");
    btn.onclick = async function () {
      btn.disabled = true;
      const res = await stripe.confirmPayment({ elements: elements, redirect: "if_required" });
      btn.disabled = false;
      if (res.error) { say(res.error.message, true); return; }
      box.hidden = true;
      try {
        const done = await mutate("POST", "/api/v1/payments/" + encodeURIComponent(p.id) + "/confirm", {});
        await afterPayment(done);
      } catch (e) { say(e.message, true); }
    };
  }

  document.getElementById("tip-form").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    const cur = document.getElementById("tip-currency").value;
    const amount = toMinor(document.getElementById("tip-amount").value, cur);
    if (amount === null) { say("Enter an amount like 5 or 5.00.", true); return; }
    const body = {
      creator_username: document.getElementById("tip-creator").value.trim(), amount: amount, currency: cur,
      message: document.getElementById("tip-message").value,
    };
    const pm = methodOf(this);
    if (pm) body.payment_method = pm;
    const btn = document.getElementById("tip-submit");
    btn.disabled = true;
    say("Paying…");
    try { await afterPayment(await mutate("POST", "/api/v1/tips", body)); } catch (e) { say(e.message, true); }
    btn.disabled = false;
  });

  document.getElementById("member-form").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    const body = { creator_username: document.getElementById("member-creator").value.trim() };
    const pm = methodOf(this);
    if (pm) body.payment_method = pm;
    say("Joining…");
    try {
      const r = await mutate("POST", "/api/v1/memberships", body);
      await afterPayment(r.payment);
    } catch (e) { say(e.message, true); }
  });

  // ---- lists ----

  async function loadPayments() {
    const tb = document.getElementById("payments");
    const data = await get("/api/v1/payments?role=payer&limit=20");
    tb.textContent = "";
    let settling = false;
    data.payments.forEach(function (p) {
      const tr = document.createElement("tr");
      cell(tr, when(p.created_at));
      cell(tr, (p.kind === "tip" ? "Tip" : "Membership") + " to creator " + p.creator_id + (p.message ? " — " + p.message : ""));
      cell(tr, money(p.amount, p.currency));
      const td = cell(tr, p.state + (p.failure_reason ? " (" + p.failure_reason + ")" : ""), "state-" + p.state);
      if (p.state === "requires_action" && cfg.provider === "test") {
        const b = document.createElement("button");
        b.className = "link";
        b.textContent = "confirm";
        b.onclick = function () { pendingAction = p; showAuth(p); };
        td.appendChild(document.createTextNode(" "));
        td.appendChild(b);
      }
      if (p.state === "processing" || p.state === "pending") settling = true;
      tb.appendChild(tr);
    });
    return settling;
  }

  async function loadMemberships() {
    const tb = document.getElementById("memberships");
    const data = await get("/api/v1/memberships?role=member&limit=50");
    tb.textContent = "";
    data.memberships.forEach(function (m) {
      const tr = document.createElement("tr");
      cell(tr, "creator " + m.creator_id);
      cell(tr, money(m.amount, m.currency) + " / period");
      cell(tr, m.state + (m.cancel_at_period_end ? " (ends at period end)" : ""), "state-" + m.state);
      cell(tr, m.current_period_end ? when(m.current_period_end) : "");
      const td = cell(tr, "");
      if ((m.state === "active" && !m.cancel_at_period_end) || m.state === "past_due") {
        const b = document.createElement("button");
        b.className = "link";
        b.textContent = "cancel";
        b.onclick = async function () {
          try { await mutate("DELETE", "/api/v1/memberships/" + encodeURIComponent(m.id)); refresh(); } catch (e) { say(e.message, true); }
        };
        td.appendChild(b);
      }
      tb.appendChild(tr);
    });
  }

  async function loadCreator() {
    const bal = await get("/api/v1/creators/" + encodeURIComponent(cfg.user_id) + "/balance");
    const tb = document.getElementById("balances");
    tb.textContent = "";
    if (bal.balances.length === 0) {
      const tr = document.createElement("tr");
      cell(tr, "No earnings yet.").colSpan = 5;
      tb.appendChild(tr);
    }
    bal.balances.forEach(function (b) {
      const tr = document.createElement("tr");
      cell(tr, b.currency);
      cell(tr, money(b.available, b.currency));
      cell(tr, money(b.pending, b.currency));
      cell(tr, money(b.in_transit, b.currency));
      cell(tr, money(b.paid_out, b.currency));
      tb.appendChild(tr);
    });
    document.getElementById("payout-destination").textContent = bal.payout_destination || "(no payout account yet)";
    const po = await get("/api/v1/payouts?limit=20");
    const pt = document.getElementById("payouts");
    pt.textContent = "";
    po.payouts.forEach(function (p) {
      const tr = document.createElement("tr");
      cell(tr, when(p.created_at));
      cell(tr, money(p.amount, p.currency));
      cell(tr, p.state + (p.failure_reason ? " (" + p.failure_reason + ")" : ""), "state-" + p.state);
      pt.appendChild(tr);
    });
    const rec = await get("/api/v1/payments?role=creator&limit=20");
    const rt = document.getElementById("received");
    rt.textContent = "";
    rec.payments.forEach(function (p) {
      const tr = document.createElement("tr");
      cell(tr, when(p.created_at));
      cell(tr, "viewer " + p.payer_id + (p.message ? " — " + p.message : ""));
      cell(tr, money(p.amount, p.currency));
      cell(tr, money(p.fee, p.currency));
      cell(tr, p.state, "state-" + p.state);
      rt.appendChild(tr);
    });
    const eps = await get("/api/v1/payments/webhook-endpoints");
    const ul = document.getElementById("endpoints");
    ul.textContent = "";
    eps.endpoints.forEach(function (e) {
      const li = document.createElement("li");
      li.textContent = e.url + " — " + e.delivered + " delivered, " + e.pending + " pending, " + e.failed + " failed ";
      const b = document.createElement("button");
      b.className = "link";
      b.textContent = "remove";
      b.onclick = async function () {
        try { await mutate("DELETE", "/api/v1/payments/webhook-endpoints/" + encodeURIComponent(e.id)); refresh(); } catch (err) { say(err.message, true); }
      };
      li.appendChild(b);
      ul.appendChild(li);
    });
  }

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    try {
      const settling = await loadPayments();
      await loadMemberships();
      await loadCreator();
      if (settling) timer = setTimeout(refresh, 2000);
    } catch (e) { say(e.message, true); }
  }

  document.getElementById("payout-form").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    const cur = document.getElementById("payout-currency").value;
    const amount = toMinor(document.getElementById("payout-amount").value, cur);
    if (amount === null) { say("Enter an amount like 10 or 10.00.", true); return; }
    try {
      const p = await mutate("POST", "/api/v1/payouts", { amount: amount, currency: cur });
      say("Payout " + p.state + ": " + money(p.amount, p.currency), p.state === "failed");
      refresh();
    } catch (e) { say(e.message, true); }
  });

  const planNow = document.getElementById("plan-now");
  function showPlan(amount, cur) {
    planNow.textContent = "Members pay " + money(amount, cur) + " per period.";
    document.getElementById("plan-amount").value = money(amount, cur).split(" ")[0];
  }
  showPlan(parseInt(planNow.dataset.amount, 10), planNow.dataset.currency);
  document.getElementById("plan-form").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    const cur = document.getElementById("plan-currency").value;
    const amount = toMinor(document.getElementById("plan-amount").value, cur);
    if (amount === null) { say("Enter a price like 5 or 5.00.", true); return; }
    try {
      const p = await mutate("PUT", "/api/v1/memberships/plan", { amount: amount, currency: cur });
      showPlan(p.amount, p.currency);
      say("Membership price saved.");
    } catch (e) { say(e.message, true); }
  });

  document.getElementById("endpoint-form").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    try {
      const e = await mutate("POST", "/api/v1/payments/webhook-endpoints", { url: document.getElementById("endpoint-url").value });
      document.getElementById("endpoint-secret").textContent = "Signing secret for " + e.url + " (shown once): " + e.secret;
      refresh();
    } catch (err) { say(err.message, true); }
  });

  // Arriving from a payment that needs authentication (?authenticate=id).
  if (root.dataset.authenticate) {
    get("/api/v1/payments/" + encodeURIComponent(root.dataset.authenticate)).then(function (p) {
      if (p.state === "requires_action") { pendingAction = p; showAuth(p); }
    }).catch(function () {});
  }
  refresh();
})();
