// Progressive enhancement only: every page works without this file.
// - [data-refresh-url]: replace the element's content with that fragment every N seconds
// - [data-countdown]: a live "in 3 h 12 min" to an ISO time
// - [data-events-url]: follow a run's server-sent events into a log, then refresh
//   [data-summary-url] once the run has ended
"use strict";

function duration(seconds) {
  var s = Math.max(0, Math.floor(seconds));
  var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
  var m = Math.floor((s % 3600) / 60), r = s % 60;
  if (d) return d + " d " + h + " h";
  if (h) return h + " h " + m + " min";
  if (m) return m + " min " + r + " s";
  return r + " s";
}

function refreshFragment(el, url) {
  url = url || el.getAttribute("data-refresh-url");
  if (!url) return null;
  return fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
    .then(function (r) {
      if (r.redirected || r.status === 401) { window.location.reload(); return null; }
      return r.ok ? r.text() : null;
    })
    .then(function (html) {
      if (html !== null) {
        el.innerHTML = html;
        el.setAttribute("data-refreshed", new Date().toISOString());
        startCountdowns(el);
      }
    })
    .catch(function () { /* keep what is shown; try again next time */ });
}

function startRefresh(el) {
  var seconds = parseFloat(el.getAttribute("data-refresh-seconds") || "10");
  window.setInterval(function () { refreshFragment(el); }, seconds * 1000);
}

function startCountdowns(root) {
  root.querySelectorAll("[data-countdown]").forEach(function (el) {
    var at = Date.parse(el.getAttribute("data-countdown"));
    function tick() { el.textContent = "in " + duration((at - Date.now()) / 1000); }
    if (!isNaN(at)) { tick(); }
  });
}

function eventLine(ev) {
  // The server formats each event's line, so the live log reads as the rendered one.
  try { return JSON.parse(ev.data).line || ""; } catch (e) { return ""; }
}

function followRun(el) {
  var log = el.querySelector("pre.log");
  var state = el.querySelector("[data-stream-state]");
  var source = new EventSource(el.getAttribute("data-events-url"));
  function append(text) {
    if (!text) return;
    var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    log.appendChild(document.createTextNode(text.replace(/\s+$/, "") + "\n"));
    if (atBottom) log.scrollTop = log.scrollHeight;
  }
  // The page's stream sends every log event unnamed ("message") and ends with "end".
  source.onmessage = function (ev) { append(eventLine(ev)); };
  source.addEventListener("end", function () {
    source.close();
    el.setAttribute("data-ended", "true");
    if (state) state.textContent = "The run has ended.";
    var summary = document.querySelector("[data-summary-url]");
    if (summary) {
      // One last refresh shows the final hosts; then nothing changes any more.
      summary.removeAttribute("data-refresh-url");
      refreshFragment(summary, summary.getAttribute("data-summary-url"));
    }
  });
  source.onerror = function () {
    if (el.getAttribute("data-ended") !== "true" && state) {
      state.textContent = "Connection lost; reconnecting…";
    }
  };
  if (state) state.textContent = "Following the run live…";
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-refresh-url]").forEach(startRefresh);
  startCountdowns(document);
  window.setInterval(function () { startCountdowns(document); }, 1000);
  document.querySelectorAll("[data-events-url]").forEach(followRun);
});
