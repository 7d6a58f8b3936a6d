// Progressive enhancement for the calendar, uptime and costs pages; each works without it.
// - form[data-tz-auto]: when the address names no time zone, show the page in the
//   browser's own zone (Intl), once; the zone field stays editable.
"use strict";

(function () {
  var form = document.querySelector("form[data-tz-auto]");
  if (!form) return;
  var zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { return; }
  var field = form.querySelector("input[name=tz]");
  var params = new URLSearchParams(window.location.search);
  if (!zone || !field || params.get("tz")) return;
  if (field.value !== zone) {
    params.set("tz", zone);
    window.location.replace(window.location.pathname + "?" + params.toString());
  }
})();
