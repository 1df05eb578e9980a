/*
 * The notification bell in the top bar (templates/monitoring/_notification_bell.html).
 *
 * live.js follows the user's own stream (notify.<id>, declared by <body
 * data-live-notifications>) and dispatches `isotope:notification` ({data: {notification,
 * unread}}) for each new notification (notification null: only the unread count changed,
 * e.g. read in another tab) and `isotope:snapshot` after a resync ({data: {notifications,
 * unread}}). This file keeps the count badge and the dropdown list current; items are
 * built like _notification_item.html (text only, never HTML from the server).
 */
(function () {
  "use strict";

  const ICONS = { info: "bi-info-circle", success: "bi-check-circle", warning: "bi-exclamation-triangle", danger: "bi-x-octagon" };
  const SHOWN = 6;

  function setCount(unread) {
    document.querySelectorAll("[data-notification-count]").forEach(function (el) {
      el.textContent = String(unread);
      el.hidden = !unread;
    });
    document.querySelectorAll("[data-notification-count-text]").forEach(function (el) { el.textContent = String(unread); });
    document.querySelectorAll("[data-notification-icon]").forEach(function (el) {
      el.classList.toggle("bi-bell-fill", unread > 0);
      el.classList.toggle("bi-bell", !unread);
    });
  }

  function item(n) {
    const link = document.createElement("a");
    link.className = "list-group-item list-group-item-action iso-notification" + (n.read ? "" : " iso-unread");
    link.href = "/notifications/" + encodeURIComponent(n.uid) + "/";
    link.dataset.notification = n.uid;
    const row = document.createElement("div");
    row.className = "d-flex gap-2 align-items-start";
    const icon = document.createElement("i");
    icon.className = "bi " + (ICONS[n.level] || ICONS.info) + " iso-level-text-" + n.level + " mt-1";
    const body = document.createElement("div");
    body.className = "flex-grow-1 min-w-0";
    const title = document.createElement("div");
    title.className = "small fw-semibold iso-notification-title";
    title.textContent = n.title;
    body.appendChild(title);
    if (n.message) {
      const message = document.createElement("div");
      message.className = "small text-body-secondary iso-notification-message";
      message.textContent = n.message;
      body.appendChild(message);
    }
    const when = document.createElement("time");
    when.className = "small text-body-secondary";
    when.dataset.ago = "";
    when.setAttribute("datetime", n.created);
    when.textContent = window.Isotope && window.Isotope.time ? window.Isotope.time.ago(n.created) : "";
    body.appendChild(when);
    row.append(icon, body);
    if (!n.read) {
      const dot = document.createElement("span");
      dot.className = "iso-unread-dot";
      dot.title = gettext("Unread");
      row.appendChild(dot);
    }
    link.appendChild(row);
    return link;
  }

  function lists() { return document.querySelectorAll("[data-notification-list]"); }

  function prepend(n) {
    lists().forEach(function (list) {
      if (list.querySelector('[data-notification="' + CSS.escape(n.uid) + '"]')) return;
      const empty = list.querySelector("[data-notification-empty]");
      if (empty) empty.remove();
      list.prepend(item(n));
      while (list.querySelectorAll("[data-notification]").length > SHOWN) list.lastElementChild.remove();
    });
  }

  function redraw(all) {
    lists().forEach(function (list) {
      list.replaceChildren();
      all.slice(0, SHOWN).forEach(function (n) { list.appendChild(item(n)); });
      if (!all.length) {
        const empty = document.createElement("div");
        empty.className = "px-3 py-3 small text-body-secondary";
        empty.dataset.notificationEmpty = "";
        empty.textContent = gettext("Nothing yet.");
        list.appendChild(empty);
      }
    });
  }

  function pulse() {
    document.querySelectorAll(".iso-bell").forEach(function (el) {
      el.classList.remove("iso-bell-ring");
      void el.offsetWidth; // restart the animation
      el.classList.add("iso-bell-ring");
    });
  }

  document.addEventListener("isotope:notification", function (e) {
    const data = e.detail.data || {};
    if (data.notification) { prepend(data.notification); pulse(); }
    if (typeof data.unread === "number") setCount(data.unread);
  });
  document.addEventListener("isotope:snapshot", function (e) {
    if (!String(e.detail.stream || "").startsWith("notify.")) return;
    const data = e.detail.data || {};
    redraw(data.notifications || []);
    setCount(data.unread || 0);
  });
})();
