/*
 * The event timeline (/t/<tenant>/events/): new events from live.js are prepended (or,
 * when an event folds, its row is updated and moved to the top) if they match the
 * page's filters and this is the first page. On `isotope:resync` the page refetches
 * itself and swaps the table body, so nothing is lost after a gap or a reconnect.
 */
(function () {
  "use strict";

  const table = document.getElementById("event-timeline");
  const template = document.getElementById("event-row-template");
  if (!table || !template) return;
  const tbody = table.tBodies[0];
  const stream = table.dataset.stream;
  const live = table.dataset.livePrepend === "1";
  const pageSize = parseInt(table.dataset.pageSize || "50", 10);
  const filters = {
    type: table.dataset.filterType || "",
    kind: table.dataset.filterKind || "",
    name: (table.dataset.filterName || "").toLowerCase(),
    reason: (table.dataset.filterReason || "").toLowerCase(),
  };

  function matches(e) {
    return (!filters.type || e.type === filters.type)
      && (!filters.kind || e.involvedObject.kind === filters.kind)
      && (!filters.name || e.involvedObject.name.toLowerCase().indexOf(filters.name) !== -1)
      && (!filters.reason || e.reason.toLowerCase() === filters.reason);
  }

  function formatTime(iso) {
    // Same as the server's "Y-m-d H:i:s" in UTC.
    const d = new Date(iso);
    const pad = function (n) { return String(n).padStart(2, "0"); };
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " "
      + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
  }

  function fill(row, e) {
    const set = function (field, text) {
      const el = row.querySelector('[data-field="' + field + '"]');
      if (el) el.textContent = text;
      return el;
    };
    row.dataset.eventUid = e.uid;
    row.dataset.type = e.type;
    row.dataset.kind = e.involvedObject.kind;
    row.dataset.name = e.involvedObject.name;
    row.dataset.reason = e.reason;
    const badge = set("type", e.type);
    badge.classList.remove("text-bg-warning", "text-bg-light", "border");
    if (e.type === "Warning") badge.classList.add("text-bg-warning");
    else badge.classList.add("text-bg-light", "border");
    set("reason", e.reason);
    set("kind", e.involvedObject.kind);
    set("name", e.involvedObject.name);
    set("message", e.message);
    set("count", "×" + e.count);
    set("source", e.source);
    const time = set("last_seen", formatTime(e.lastTimestamp));
    time.setAttribute("datetime", e.lastTimestamp);
    time.title = "first seen " + formatTime(e.firstTimestamp) + " UTC";
  }

  function markEmpty() {
    const empty = document.querySelector("#event-timeline-card [data-empty]");
    if (empty) empty.hidden = tbody.rows.length > 0;
  }

  let refetching = null;
  let arrived = []; // events that came in while a refetch was on its way

  document.addEventListener("isotope:event", function (ev) {
    if (refetching) arrived.push(ev.detail);
    show(ev.detail);
  });

  function show(detail) {
    if (!live || detail.stream !== stream || !matches(detail.data)) return;
    const e = detail.data;
    let row = tbody.querySelector('tr[data-event-uid="' + CSS.escape(e.uid) + '"]');
    if (row) {
      // A fold arrives with a higher count; an older copy (out of order) is ignored.
      const shown = parseInt((row.querySelector('[data-field="count"]').textContent || "×0").slice(1), 10);
      if (shown > e.count) return;
    } else {
      row = template.content.firstElementChild.cloneNode(true);
    }
    fill(row, e);
    row.classList.add("iso-event-new");
    tbody.insertBefore(row, tbody.firstChild);
    setTimeout(function () { row.classList.remove("iso-event-new"); }, 2000);
    while (tbody.rows.length > pageSize) tbody.deleteRow(tbody.rows.length - 1);
    markEmpty();
  }

  document.addEventListener("isotope:resync", function (ev) {
    if (ev.detail.stream !== stream || refetching) return;
    refetching = fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) return;
        const doc = new DOMParser().parseFromString(html, "text/html");
        const fresh = doc.querySelector("#event-timeline tbody");
        if (fresh) tbody.replaceChildren.apply(tbody, Array.from(fresh.childNodes).map(function (n) { return document.importNode(n, true); }));
        arrived.forEach(show); // newer than the page we fetched, or already in it (no-op)
        markEmpty();
      })
      .catch(function () { /* the next resync or reload repairs it */ })
      .finally(function () { refetching = null; arrived = []; });
  });
})();
