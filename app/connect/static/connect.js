// Follows the connection check: polls the page's status endpoint and reloads when the step moves on.
(function () {
  "use strict";
  var box = document.getElementById("check-progress");
  if (!box) { return; }
  var url = box.getAttribute("data-status-url");
  var statusText = document.getElementById("check-status");
  var messages = {
    queued: "Waiting for the connection check to start…",
    running: "Checking the connection and finding what can be synced…"
  };
  var delay = 1000;

  function poll() {
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 410 || response.status === 404) { window.location.reload(); return null; }
        return response.json();
      })
      .then(function (body) {
        if (!body) { return; }
        var status = body.check ? body.check.status : "queued";
        if (body.step !== "discover_schema" || status === "failed") { window.location.reload(); return; }
        if (messages[status] && statusText.textContent.trim() !== messages[status]) {
          statusText.textContent = messages[status];
        }
        delay = Math.min(delay * 1.2, 4000);
        window.setTimeout(poll, delay);
      })
      .catch(function () { window.setTimeout(poll, 4000); });
  }
  window.setTimeout(poll, delay);
}());
