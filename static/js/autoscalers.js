// The autoscalers list: redraw a row from its autoscaler's live state (measured metric,
// replicas, last decision, last run) and a pool autoscaler's current replicas from its
// pool's. live.js patches the message and marks deleted rows.
(function () {
  "use strict";

  function set(row, field, value) {
    row.querySelectorAll('[data-as-field="' + field + '"]').forEach((el) => { el.textContent = value; });
  }

  const count = (value) => (value === null || value === undefined ? "—" : String(value));

  function applyAutoscaler(data) {
    const row = document.querySelector('[data-autoscaler-row="' + CSS.escape(data.name) + '"]');
    if (!row || data.deleted) return;
    const state = data.state || {};
    set(row, "currentMetric", state.currentMetric === null || state.currentMetric === undefined ? "—" : state.currentMetric + "%");
    // A pool's current size is the pool's (its own live state); a Deployment's is its HPA's.
    if (!row.dataset.targetPool) set(row, "currentReplicas", count(state.currentReplicas));
    set(row, "desiredReplicas", count(state.desiredReplicas));
    set(row, "reason", state.reason || gettext("not run yet"));
    const message = row.querySelector('[data-live-field="message"]');
    if (message) message.title = state.message || "";
    row.querySelectorAll('[data-as-field="lastRun"]').forEach((el) => {
      if (!state.lastRun) return;
      el.setAttribute("datetime", state.lastRun);
      el.title = state.lastRun.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC");
      el.textContent = window.Isotope && window.Isotope.time ? window.Isotope.time.ago(state.lastRun) : state.lastRun;
    });
  }

  function applyPool(data) {
    if (data.deleted) return;
    const state = data.state || {};
    document.querySelectorAll('[data-target-pool="' + CSS.escape(data.name) + '"]').forEach((row) => {
      if (state.replicas !== undefined) set(row, "currentReplicas", count(state.replicas));
    });
  }

  document.addEventListener("isotope:resource", (event) => {
    const data = event.detail && event.detail.data;
    if (!data) return;
    if (data.kind === "autoscaler") applyAutoscaler(data);
    else if (data.kind === "vmpool") applyPool(data);
  });
})();
