// The staff page's script (no inline scripts: the CSP is script-src 'self').
// Acknowledge buttons (operators) and polling of /v1/forecasts/latest with If-None-Match.
"use strict";
(function () {
  const body = document.body;
  const HEADER = body.dataset.pageHeader || "forecast-page";
  const POLL_MS = 60000;

  async function acknowledge(id, row) {
    row = row || document.querySelector('[data-notification="' + id + '"]');
    const msg = row ? row.querySelector("[data-ack-msg]") : null;
    const button = row ? row.querySelector("[data-ack]") : null;
    if (button) button.disabled = true;
    if (msg) msg.textContent = "";
    let response;
    try {
      response = await fetch("/v1/notifications/" + encodeURIComponent(id) + "/acknowledge", {
        method: "POST", credentials: "same-origin",
        headers: { "X-Requested-With": HEADER, "Content-Type": "application/json" },
        body: "{}",
      });
    } catch (err) {
      if (msg) msg.textContent = body.dataset.msgFailed + err;
      if (button) button.disabled = false;
      return false;
    }
    if (response.ok) {
      const got = await response.json();
      if (row) {
        const state = row.querySelector("[data-ack-state]");
        state.textContent = body.dataset.msgAcked + ": " + (got.acknowledged_by || "");
        state.classList.add("done");
        row.dataset.state = got.state;
        if (button) button.remove();
      }
      return true;
    }
    let detail = response.status + " " + response.statusText;
    try {
      const problem = await response.json();
      detail = response.status + " " + (problem.title || "") + ": " + (problem.detail || "");
    } catch (err) { /* not a problem document */ }
    const lead = response.status === 403 ? body.dataset.msgForbidden + " " : body.dataset.msgRefused;
    if (msg) msg.textContent = lead + "(" + detail + ")";
    if (button) button.disabled = false;
    return false;
  }

  document.addEventListener("click", function (ev) {
    const button = ev.target.closest("[data-ack]");
    if (!button) return;
    ev.preventDefault();
    acknowledge(button.dataset.ack, button.closest("[data-notification]"));
  });

  // Reload when a new forecast run lands (the ETag of /v1/forecasts/latest changes).
  let etag = null;
  async function poll() {
    try {
      const headers = etag ? { "If-None-Match": etag } : {};
      const r = await fetch("/v1/forecasts/latest", { credentials: "same-origin", headers: headers, cache: "no-cache" });
      if (r.status === 200) {
        const next = r.headers.get("ETag");
        if (etag !== null && next && next !== etag) {
          const note = document.getElementById("update-note");
          if (note) { note.textContent = body.dataset.msgUpdated; note.hidden = false; }
          window.location.reload();
          return;
        }
        etag = next;
      } else if (r.status === 401) {
        window.location.reload();   // signed out or expired: the page sends to the sign-in
        return;
      }
    } catch (err) { /* offline for a moment: try again at the next poll */ }
    window.setTimeout(poll, POLL_MS);
  }
  poll();

  window.forecastPage = { acknowledge: acknowledge, poll: poll, etag: function () { return etag; } };
})();
