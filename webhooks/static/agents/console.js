// Fatoura agent console: live panels over Server-Sent Events, no manual refresh.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var queue = document.getElementById("queue");
  if (!live || !queue) return; // the sign-in page

  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  var ticketLive = document.getElementById("ticket-live");
  var ticket = ticketLive ? ticketLive.getAttribute("data-ticket") : null;
  var query = ticket ? "?ticket=" + encodeURIComponent(ticket) : "";

  function holder(root) {
    var status = root && root.querySelector(".status");
    return status ? status.getAttribute("data-holder") : null;
  }

  function scrollTranscript() {
    var transcript = document.getElementById("transcript");
    if (transcript) transcript.scrollTop = transcript.scrollHeight;
  }

  function refresh() {
    fetch("/agents/panels" + query, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) { window.location.assign("/agents"); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (!html) return;
        var next = new DOMParser().parseFromString(html, "text/html");
        var nextQueue = next.getElementById("queue-next");
        if (nextQueue) queue.innerHTML = nextQueue.innerHTML;
        var nextLive = next.getElementById("ticket-live-next");
        if (ticketLive && nextLive) {
          // Claimed, handed over or closed elsewhere: the forms change too, so reload the page.
          if (holder(nextLive) !== holder(ticketLive)) { window.location.assign("/agents" + query); return; }
          ticketLive.innerHTML = nextLive.innerHTML;
          scrollTranscript();
        }
      })
      .catch(function () { /* the stream reconnects and triggers another refresh */ });
  }

  function connect() {
    var stream = new EventSource("/agents/stream" + query);
    stream.addEventListener("ready", function () {
      live.className = "live on";
      live.textContent = "";
      refresh(); // what changed between the page's render (or a dropped stream) and now
    });
    stream.addEventListener("change", refresh);
    stream.addEventListener("expired", function () {
      stream.close();
      live.className = "live off";
      live.textContent = live.getAttribute("data-expired");
      setTimeout(function () { window.location.assign("/agents"); }, 1500);
    });
    stream.onerror = function () { live.className = "live off"; live.textContent = live.getAttribute("data-offline"); };
  }

  scrollTranscript();
  connect();
})();
