// Workload pages: apply the parts of live workload states that live.js leaves to the
// page (ready counts, the pod table, buttons by role, message visibility, deletion),
// and on the create form hide the replicas field for a single pod. The confirm modal
// for destructive actions comes from vms.js, which these pages load too.
(function () {
  "use strict";

  const POD_PHASE = { Running: "Running", Failed: "Failed", Succeeded: "Failed" };

  function text(el, value) { if (el) el.textContent = value; }

  // The security groups its pods are in, as links to the groups' pages (data-href-base).
  function drawGroups(el, names) {
    if (!Array.isArray(names) || el.dataset.groups === names.join(",")) return;
    el.dataset.groups = names.join(",");
    el.replaceChildren();
    names.forEach((name, i) => {
      if (i) el.append(", ");
      const link = document.createElement("a");
      link.href = el.dataset.hrefBase + encodeURIComponent(name) + "/";
      link.textContent = name;
      el.append(link);
    });
  }

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
      badge.textContent = window.Isotope.phaseLabel(p.phase);
      const phase = document.createElement("span");
      phase.appendChild(badge);
      if (p.reason) phase.append(" " + p.reason);
      cell(row, phase);
      const icon = document.createElement("i");
      icon.className = p.ready ? "bi bi-check-circle-fill text-success" : "bi bi-hourglass-split text-body-secondary";
      icon.setAttribute("role", "img");
      icon.setAttribute("aria-label", p.ready ? gettext("ready") : gettext("not ready"));
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
      root.querySelectorAll('[data-live-field="securityGroups"]').forEach((el) => drawGroups(el, state.securityGroups));
      // The field follows the count until the user edits it (its default value moves;
      // the value the user typed stays, as the browser keeps an edited value).
      root.querySelectorAll('input[name="replicas"]').forEach((el) => {
        if (document.activeElement !== el) el.defaultValue = state.replicas;
      });
      const message = state.message || "";
      root.querySelectorAll("[data-live-hide-empty]").forEach((el) => { el.hidden = !message; el.title = message; });
      root.querySelectorAll('[data-live-show-with="message"]').forEach((el) => { el.hidden = !message; });
      if (Array.isArray(state.pods)) drawPods(root, state.pods);
    });
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
