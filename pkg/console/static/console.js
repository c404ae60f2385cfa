// secauto console: live updates, nothing else. Pages work without it.
// The jobs list redraws itself every few seconds (its first page, or a
// page with a live job on it); a live job's page follows the job's events
// (GET /ui/jobs/{id}/events) and redraws its sections from the
// server-rendered page.
(function () {
  "use strict";

  // swap replaces each element of ids with the one of the same id in a
  // freshly fetched copy of this page, unless it holds the keyboard focus.
  function swap(html, ids) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    ids.forEach(function (id) {
      var cur = document.getElementById(id);
      var next = doc.getElementById(id);
      if (!cur || !next || cur.contains(document.activeElement)) {
        return;
      }
      cur.replaceWith(document.importNode(next, true));
    });
    return doc;
  }

  function reload(ids) {
    return fetch(location.href, { credentials: "same-origin" }).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (t) {
      return t ? swap(t, ids) : null;
    });
  }

  var list = document.querySelector("#jobs-list[data-refresh]");
  if (list) {
    var every = (parseInt(list.getAttribute("data-refresh"), 10) || 5) * 1000;
    setInterval(function () {
      if (!document.hidden) {
        reload(["jobs-list"]);
      }
    }, every);
  }

  var live = document.querySelector("[data-events]");
  if (live && window.EventSource) {
    var ids = Array.prototype.map.call(document.querySelectorAll("[data-live]"), function (e) { return e.id; });
    var es = new EventSource(live.getAttribute("data-events"));
    var busy = false, again = false;
    var refresh = function () {
      if (busy) { again = true; return; }
      busy = true;
      reload(ids).then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      }, function () { busy = false; });
    };
    ["step", "status", "resync"].forEach(function (ev) { es.addEventListener(ev, refresh); });
    es.addEventListener("end", function () { es.close(); refresh(); });
    // The job was deleted: the reloaded page says so.
    es.addEventListener("gone", function () { es.close(); location.reload(); });
  }
})();
