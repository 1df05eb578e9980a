/*
 * Live event tables (templates/monitoring/_event_table.html): the tenant's timeline
 * (/t/<tenant>/events/) and the "Recent events" of a VM or a workload page share this.
 *
 * Each table[data-event-table] declares its stream, whether it takes live rows (the
 * timeline's first page does, older pages do not), how many rows it keeps, and either
 * the timeline's filters or one object (data-object="vm/web-1", exact). New events from
 * live.js that match are prepended; a folded repeat updates its row and moves it to the
 * top. On `isotope:resync` the page refetches itself and swaps the table's rows, so
 * nothing is lost after a gap or a reconnect.
 *
 * Long messages are clamped to two lines with the full text on hover; a click (or
 * Enter) on a clamped message expands it.
 */
(function () {
  "use strict";

  const tables = Array.from(document.querySelectorAll("table[data-event-table]")).map(setup);
  if (!tables.length) return;

  function setup(table) {
    const object = (table.dataset.object || "").split("/");
    return {
      table: table,
      tbody: table.tBodies[0],
      template: table.parentElement.querySelector("template[data-event-row-template]"),
      empty: table.closest(".card, body").querySelector("[data-event-empty]"),
      stream: table.dataset.stream,
      live: table.dataset.livePrepend === "1",
      pageSize: parseInt(table.dataset.pageSize || "50", 10),
      object: table.dataset.object ? { kind: object[0], name: object.slice(1).join("/") } : null,
      filters: {
        type: table.dataset.filterType || "",
        kind: table.dataset.filterKind || "",
        name: (table.dataset.filterName || "").toLowerCase(),
        reason: (table.dataset.filterReason || "").toLowerCase(),
      },
      refetching: null,
      arrived: [], // events that came in while a refetch was on its way
    };
  }

  function matches(t, e) {
    const target = e.involvedObject;
    if (t.object) return target.kind === t.object.kind && target.name === t.object.name;
    const f = t.filters;
    return (!f.type || e.type === f.type)
      && (!f.kind || target.kind === f.kind)
      && (!f.name || target.name.toLowerCase().indexOf(f.name) !== -1)
      && (!f.reason || e.reason.toLowerCase() === f.reason);
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
    // Warnings carry a badge; Normal events go without (most events are Normal).
    row.querySelector('[data-field="type"]').hidden = e.type !== "Warning";
    set("reason", e.reason);
    set("kind", e.involvedObject.kind);
    const name = set("name", e.involvedObject.name);
    if (name) name.title = e.involvedObject.name;
    const message = set("message", e.message);
    message.title = e.message;
    delete message.dataset.expanded;
    const count = set("count", "×" + e.count);
    count.dataset.count = String(e.count);
    count.title = interpolate(ngettext("Seen %s time", "Seen %s times", e.count), [e.count]);
    count.hidden = e.count < 2;
    set("source", e.source);
    const time = set("last_seen", window.Isotope.time.ago(e.lastTimestamp));
    time.setAttribute("datetime", e.lastTimestamp);
    time.title = interpolate(gettext("%(last)s UTC, first seen %(first)s UTC"), { last: formatTime(e.lastTimestamp), first: formatTime(e.firstTimestamp) }, true);
  }

  function markEmpty(t) {
    if (t.empty) t.empty.hidden = t.tbody.rows.length > 0;
  }

  function show(t, detail) {
    if (!t.live || detail.stream !== t.stream || !matches(t, detail.data)) return;
    const e = detail.data;
    let row = t.tbody.querySelector('tr[data-event-uid="' + CSS.escape(e.uid) + '"]');
    if (row) {
      // A fold arrives with a higher count; an older copy (out of order) is ignored.
      const shown = parseInt(row.querySelector('[data-field="count"]').dataset.count || "0", 10);
      if (shown > e.count) return;
    } else {
      row = t.template.content.firstElementChild.cloneNode(true);
    }
    fill(row, e);
    row.classList.add("iso-event-new");
    t.tbody.insertBefore(row, t.tbody.firstChild);
    setTimeout(function () { row.classList.remove("iso-event-new"); }, 2000);
    while (t.tbody.rows.length > t.pageSize) t.tbody.deleteRow(t.tbody.rows.length - 1);
    markEmpty(t);
    clamp(row);
  }

  document.addEventListener("isotope:event", function (ev) {
    tables.forEach(function (t) {
      if (t.refetching) t.arrived.push(ev.detail);
      show(t, ev.detail);
    });
  });

  document.addEventListener("isotope:resync", function (ev) {
    tables.forEach(function (t) {
      if (ev.detail.stream !== t.stream || t.refetching) return;
      // Retried while the page cannot be had (the banner says the table may be out of
      // date); events that arrive meanwhile are shown and shown again over the fresh rows.
      t.refetching = window.Isotope.live.retrying("events " + t.table.id, function () {
        return fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
          .then(function (response) {
            if (!response.ok) throw new Error("HTTP " + response.status);
            return response.text();
          })
          .then(function (html) {
            const doc = new DOMParser().parseFromString(html, "text/html");
            const fresh = doc.querySelector("#" + CSS.escape(t.table.id) + " tbody");
            if (fresh) t.tbody.replaceChildren.apply(t.tbody, Array.from(fresh.childNodes).map(function (n) { return document.importNode(n, true); }));
            t.arrived.forEach(function (detail) { show(t, detail); }); // newer than the page, or in it already (no-op)
            markEmpty(t);
            t.tbody.querySelectorAll("[data-clamp]").forEach(clampOne);
          });
      }).finally(function () { t.refetching = null; t.arrived = []; });
    });
  });

  // --- Long messages: two lines, the rest on hover or on click -------------------------
  function clampOne(el) {
    if (el.dataset.expanded) return;
    const clipped = el.scrollHeight > el.clientHeight + 1;
    el.classList.toggle("iso-clamped", clipped);
    if (clipped) {
      el.tabIndex = 0;
      el.setAttribute("role", "button");
      el.setAttribute("aria-expanded", "false");
    } else {
      el.removeAttribute("tabindex");
      el.removeAttribute("role");
      el.removeAttribute("aria-expanded");
    }
  }

  function clamp(root) { root.querySelectorAll("[data-clamp]").forEach(clampOne); }

  function toggle(el) {
    if (!el.classList.contains("iso-clamped") && !el.dataset.expanded) return;
    const open = !el.dataset.expanded;
    if (open) el.dataset.expanded = "1"; else delete el.dataset.expanded;
    el.setAttribute("aria-expanded", open ? "true" : "false");
  }

  tables.forEach(function (t) {
    clamp(t.tbody);
    t.tbody.addEventListener("click", function (ev) {
      const el = ev.target.closest("[data-clamp]");
      if (el && !window.getSelection().toString()) toggle(el);
    });
    t.tbody.addEventListener("keydown", function (ev) {
      const el = ev.target.closest("[data-clamp]");
      if (el && (ev.key === "Enter" || ev.key === " ")) { ev.preventDefault(); toggle(el); }
    });
  });
  let resized = null;
  window.addEventListener("resize", function () {
    clearTimeout(resized);
    resized = setTimeout(function () { tables.forEach(function (t) { clamp(t.tbody); }); }, 150);
  });
})();
