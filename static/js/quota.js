/*
 * The tenant overview's quota, live (templates/tenants/overview.html).
 *
 * live.js delivers `isotope:resource` for the tenant's stream:
 *   - kind "quota" (usage.services.requests.quota_publish, after a limit change):
 *     state.resources = {cpu: {used, limit, percent, level, over, unit, label}, ...}
 *     → the bars inside [data-live-quota=<tenant>] (components/quota_bars.html);
 *   - kind "quota-request" (request_state): the request's row in
 *     [data-quota-request-list], added when new; the "Request more quota" button is
 *     enabled again once no request is pending.
 */
(function () {
  "use strict";
  const LEVELS = ["iso-level-ok", "iso-level-warn", "iso-level-full"];
  const STATES = { Pending: gettext("Pending"), Approved: gettext("Approved"), PartiallyApproved: gettext("Partially approved"), Rejected: gettext("Rejected") };

  function grouped(value) {
    const text = String(value);
    const [whole, fraction] = text.split(".");
    const digits = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return fraction ? digits + "." + fraction.replace(/0+$/, "") : digits;
  }

  function patchQuota(tenant, resources) {
    document.querySelectorAll('[data-live-quota="' + CSS.escape(tenant) + '"]').forEach(function (root) {
      Object.keys(resources).forEach(function (name) {
        const r = resources[name];
        const row = root.querySelector('.iso-quota-row[data-resource="' + CSS.escape(name) + '"]');
        if (!row) return;
        const used = row.querySelector(".used");
        const limit = row.querySelector(".limit");
        if (used) used.textContent = grouped(r.used);
        if (limit) limit.textContent = grouped(r.limit);
        const bar = row.querySelector(".progress-bar");
        if (bar) {
          bar.style.width = r.percent + "%";
          LEVELS.forEach(function (c) { bar.classList.remove(c); });
          bar.classList.add("iso-level-" + r.level);
        }
        const progress = row.querySelector('[role="progressbar"]');
        if (progress) progress.setAttribute("aria-valuenow", String(r.percent));
        row.dataset.level = r.level;
      });
    });
  }

  function field(row, name, text) {
    const el = row.querySelector('[data-request-field="' + name + '"]');
    if (el) el.textContent = text;
    return el;
  }

  function newRow(name) {
    const row = document.createElement("li");
    row.className = "list-group-item";
    row.dataset.quotaRequest = name;
    row.dataset.testid = "quota-request-" + name;
    row.setAttribute("data-testid", "quota-request-" + name);
    row.innerHTML = '<div class="d-flex justify-content-between align-items-start gap-2"><div>' +
      '<div class="fw-medium"><span data-request-field="increaseText"></span> <span class="small text-body-secondary">by <span data-request-field="requester"></span></span></div>' +
      '<div class="small text-body-secondary" data-request-field="reason"></div><div class="small" data-request-field="decision"></div></div>' +
      '<span class="badge iso-request-state" data-request-field="state"></span></div>';
    return row;
  }

  function patchRequest(state) {
    document.querySelectorAll("[data-quota-request-list]").forEach(function (list) {
      let row = list.querySelector('[data-quota-request="' + CSS.escape(state.name) + '"]');
      if (!row) {
        row = newRow(state.name);
        const empty = list.querySelector("[data-quota-request-empty]");
        if (empty) empty.remove();
        list.prepend(row);
      }
      field(row, "increaseText", state.increaseText);
      field(row, "requester", state.requester);
      field(row, "reason", state.reason);
      let decision = "";
      if (state.state !== "Pending") {
        if (state.grantedText) decision = interpolate(gettext("Granted %s. "), [state.grantedText]);
        decision += state.decisionReason || "";
      }
      field(row, "decision", decision);
      const badge = field(row, "state", STATES[state.state] || state.state);
      if (badge) {
        badge.className = "badge iso-request-state iso-request-" + state.state;
        badge.dataset.state = state.state;
      }
    });
    const pending = document.querySelector('[data-request-field="state"][data-state="Pending"]');
    document.querySelectorAll("[data-quota-request-open]").forEach(function (button) {
      button.disabled = Boolean(pending);
      button.title = pending ? gettext("A request is pending") : "";
    });
  }

  document.addEventListener("isotope:resource", function (e) {
    const data = e.detail.data || {};
    if (!data.state) return;
    if (data.kind === "quota" && data.state.resources) patchQuota(data.tenant, data.state.resources);
    else if (data.kind === "quota-request") patchRequest(data.state);
  });
})();
