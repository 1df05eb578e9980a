// Workload pages: apply the parts of live workload states that live.js leaves to the
// page (ready counts, the pod table, buttons by role, message visibility, deletion),
// and on the create form hide the replicas field for a single pod. The confirm modal
// for destructive actions comes from vms.js, which these pages load too.
(function () {
  "use strict";

  const POD_PHASE = { Running: "Running", Failed: "Failed", Succeeded: "Failed" };

  function text(el, value) { if (el) el.textContent = value; }

  function cell(row, content, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    if (content instanceof Node) td.appendChild(content); else td.textContent = content;
    row.appendChild(td);
  }

  function drawPods(root, pods) {
    const body = root.querySelector("[data-pods]");
    if (!body) return;
    body.replaceChildren();
    pods.forEach((p) => {
      const row = document.createElement("tr");
      row.dataset.pod = p.name;
      cell(row, p.name, "font-monospace small");
      const badge = document.createElement("span");
      badge.className = "iso-phase";
      badge.dataset.phase = POD_PHASE[p.phase] || "Pending";
      badge.textContent = p.phase;
      const phase = document.createElement("span");
      phase.appendChild(badge);
      if (p.reason) phase.append(" " + p.reason);
      cell(row, phase);
      const icon = document.createElement("i");
      icon.className = p.ready ? "bi bi-check-circle-fill text-success" : "bi bi-hourglass-split text-body-secondary";
      icon.setAttribute("aria-label", p.ready ? "ready" : "not ready");
      cell(row, icon);
      cell(row, p.node || "—", "small");
      cell(row, String(p.restarts || 0), "text-end");
      body.appendChild(row);
    });
    const empty = root.querySelector("[data-pods-empty]");
    if (empty) empty.hidden = pods.length > 0;
  }

  document.addEventListener("isotope:resource", (event) => {
    const data = event.detail && event.detail.data;
    if (!data || data.kind !== "workload") return;
    const sel = '[data-live-kind="workload"][data-live-name="' + CSS.escape(data.name) + '"]';
    document.querySelectorAll(sel).forEach((root) => {
      if (data.deleted) {
        root.dataset.liveDeleted = "1";
        if (root.dataset.testid === "workload-detail") {
          document.querySelectorAll("[data-live-show-when-deleted]").forEach((el) => { el.hidden = false; });
        }
        return;
      }
      const state = data.state || {};
      const scope = root.closest("[data-live-role]") || root;
      const actions = (state.actionsByRole || {})[scope.dataset.liveRole] || [];
      root.querySelectorAll("[data-live-action]").forEach((el) => {
        el.hidden = actions.indexOf(el.dataset.liveAction) === -1;
      });
      root.querySelectorAll('[data-live-field="ready"]').forEach((el) => text(el, state.ready));
      root.querySelectorAll('[data-live-field="replicas"]').forEach((el) => text(el, state.replicas));
      root.querySelectorAll('[data-live-field="availableReplicas"]').forEach((el) => text(el, state.availableReplicas));
      root.querySelectorAll('[data-live-field="resourceVersion"]').forEach((el) => text(el, state.resourceVersion));
      root.querySelectorAll('input[name="replicas"]').forEach((el) => {
        if (document.activeElement !== el) el.value = state.replicas;
      });
      const message = state.message || "";
      root.querySelectorAll("[data-live-hide-empty]").forEach((el) => { el.hidden = !message; el.title = message; });
      root.querySelectorAll('[data-live-show-with="message"]').forEach((el) => { el.hidden = !message; });
      if (Array.isArray(state.pods)) drawPods(root, state.pods);
    });
  });

  // The detail page's event table: new events (the portal's and Kubernetes') go on top,
  // a folded repeat updates its row's count and time.
  document.addEventListener("isotope:event", (event) => {
    const e = event.detail && event.detail.data;
    const target = e && e.involvedObject;
    if (!target || target.kind !== "workload") return;
    const table = document.querySelector('[data-live-events="workload/' + CSS.escape(target.name) + '"]');
    if (!table) return;
    const body = table.querySelector("tbody");
    let row = body.querySelector('tr[data-event-uid="' + CSS.escape(e.uid) + '"]');
    if (!row) {
      row = document.createElement("tr");
      row.dataset.eventUid = e.uid;
      body.prepend(row);
    }
    row.replaceChildren();
    const badge = document.createElement("span");
    badge.className = "badge rounded-pill " + (e.type === "Warning" ? "text-bg-warning" : "text-bg-light border");
    badge.textContent = e.type;
    cell(row, badge);
    cell(row, e.reason, "fw-semibold");
    cell(row, e.message);
    const count = document.createElement("span");
    if (e.count > 1) { count.className = "badge text-bg-secondary"; count.textContent = "×" + e.count; }
    cell(row, count, "text-end");
    cell(row, (e.lastTimestamp || "").replace("T", " ").slice(0, 19), "text-nowrap small text-body-secondary");
    while (body.children.length > 20) body.lastElementChild.remove();
  });

  const kinds = document.querySelectorAll('input[name="kind"]');
  const replicas = document.querySelector("[data-replicas]");
  if (kinds.length && replicas) {
    const sync = () => {
      const checked = document.querySelector('input[name="kind"]:checked');
      replicas.hidden = !!checked && checked.value === "Pod";
    };
    kinds.forEach((el) => el.addEventListener("change", sync));
    sync();
  }
})();
