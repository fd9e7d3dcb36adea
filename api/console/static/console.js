// Orchestrator console: the live parts (status over Server-Sent Events, the followed log).
// Served as a file: the Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  function statusClass(status) {
    return "st-" + (status || "unknown").toLowerCase();
  }

  function setStatus(scope, row) {
    scope.querySelectorAll('[data-field="status"]').forEach(function (el) {
      el.textContent = row.status;
      el.className = el.className.replace(/\bst-[a-z]+\b/g, "").trim() + " " + statusClass(row.status);
    });
    scope.querySelectorAll('[data-field="reason"]').forEach(function (el) {
      el.textContent = row.reason;
    });
  }

  function listen(url, refs, onStatus) {
    if (!window.EventSource || refs.length === 0) return null;
    var query = refs.map(function (r) { return "task=" + encodeURIComponent(r); }).join("&");
    var source = new EventSource(url + "?" + query);
    source.addEventListener("status", function (event) {
      onStatus(JSON.parse(event.data));
    });
    return source;
  }

  // Tasks page: every row follows its task's status.
  function liveTasks(table) {
    var rows = {};
    table.querySelectorAll("tr[data-task]").forEach(function (tr) { rows[tr.dataset.task] = tr; });
    listen(table.dataset.events, Object.keys(rows), function (row) {
      var tr = rows[row.ref];
      if (tr) setStatus(tr, row);
    });
  }

  // Task page: status and reason at once, then the parts that depend on them.
  function liveTask(box) {
    var lastSeen = null;
    listen(box.dataset.events, [box.dataset.liveTask], function (row) {
      setStatus(box, row);
      var key = row.status + "|" + row.updated_at;
      if (lastSeen !== null && lastSeen !== key) refreshParts(box);
      if (lastSeen === null && box.dataset.status && box.dataset.status !== row.status) refreshParts(box);
      lastSeen = key;
      if (ACTIVE.indexOf(row.status) >= 0) {
        logEnded = false;  // a new run (retry, new context): follow it
        startLogs(true);
      }
    });
    var badge = box.querySelector('[data-field="status"]');
    if (badge) box.dataset.status = badge.textContent;
  }

  function refreshParts(box) {
    fetch(box.dataset.parts, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.body;
        box.replaceChildren.apply(box, Array.prototype.slice.call(fresh.childNodes));
        var badge = box.querySelector('[data-field="status"]');
        if (badge) box.dataset.status = badge.textContent;
      })
      .catch(function () { /* the next status event tries again */ });
  }

  var ACTIVE = ["Preparing", "Launching", "Running"];
  var logSource = null;
  var logEnded = false;

  // The log panel: the run's last lines, then each new one, until the run ends.
  // It starts by itself on a page whose run is live, and when the task becomes active.
  function startLogs(active) {
    var pre = document.getElementById("log");
    if (!pre || !pre.dataset.logs || logSource || logEnded || !window.EventSource) return;
    if (!active && pre.dataset.live !== "1") return;
    pre.dataset.live = "1";
    logSource = new EventSource(pre.dataset.logs);
    logSource.addEventListener("reset", function (event) {
      pre.textContent = "";
      var hint = document.getElementById("log-hint");
      if (!hint) {
        hint = document.createElement("p");
        hint.id = "log-hint";
        hint.className = "hint";
        pre.parentNode.insertBefore(hint, pre);
      }
      hint.textContent = "Following run " + JSON.parse(event.data) + ".";
      hint.hidden = false;
    });
    logSource.addEventListener("line", function (event) {
      var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.appendChild(document.createTextNode(JSON.parse(event.data) + "\n"));
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    });
    logSource.addEventListener("end", function () {
      logEnded = true;
      logSource.close();
      logSource = null;
    });
    logSource.addEventListener("waiting", function () {
      // No run or no output yet: ask again after a while (a status change also asks).
      logSource.close();
      logSource = null;
      window.setTimeout(function () { startLogs(false); }, 3000);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table[data-live-tasks]").forEach(liveTasks);
    document.querySelectorAll("[data-live-task]").forEach(liveTask);
    startLogs(false);
  });
})();
