// VM pool pages (and a Deployment's autoscaler panel): apply the parts of live pool and
// autoscaler states that live.js leaves to the page (counts, the members table, the scale input, deletion; the autoscaler's
// measurement, decision and last decisions). live.js patches the pool's phase and
// message; the confirm modal for deleting comes from vms.js.
(function () {
  "use strict";

  function text(el, value) { if (el) el.textContent = value; }

  function cell(row, content) {
    const td = document.createElement("td");
    if (content instanceof Node) td.appendChild(content); else td.textContent = content;
    row.appendChild(td);
    return td;
  }

  function drawMembers(root, members) {
    const body = root.querySelector("[data-members]");
    if (!body) return;
    const tenant = root.dataset.poolTenant;
    body.replaceChildren();
    members.forEach((m) => {
      const row = document.createElement("tr");
      row.dataset.member = m.name;
      const link = document.createElement("a");
      link.className = "font-monospace small";
      link.href = "/t/" + encodeURIComponent(tenant) + "/vms/" + encodeURIComponent(m.name) + "/";
      link.textContent = m.name;
      cell(row, link);
      const badge = document.createElement("span");
      badge.className = "iso-phase";
      badge.dataset.phase = m.phase;
      badge.textContent = window.Isotope && window.Isotope.phaseLabel ? window.Isotope.phaseLabel(m.phase) : m.phase;
      cell(row, badge);
      const icon = document.createElement("i");
      icon.className = m.ready ? "bi bi-check-circle-fill text-success" : "bi bi-hourglass-split text-body-secondary";
      icon.setAttribute("role", "img");
      icon.setAttribute("aria-label", m.ready ? gettext("ready") : gettext("not ready"));
      cell(row, icon);
      const template = document.createElement("span");
      template.className = "font-monospace";
      template.textContent = m.template === null || m.template === undefined ? "—" : m.template;
      const tcell = cell(row, template);
      tcell.className = "small";
      if (m.warm) {
        const badge = document.createElement("span");
        badge.className = "badge text-bg-info";
        badge.textContent = gettext("warm");
        tcell.append(" ", badge);
      }
      body.appendChild(row);
    });
    const empty = root.querySelector("[data-members-empty]");
    if (empty) empty.hidden = members.length > 0;
  }

  function applyPool(data) {
    const sel = '[data-live-kind="vmpool"][data-live-name="' + CSS.escape(data.name) + '"]';
    document.querySelectorAll(sel).forEach((root) => {
      if (data.deleted) {
        root.dataset.liveDeleted = "1";
        if (root.dataset.testid === "pool-detail") {
          document.querySelectorAll("[data-live-show-when-deleted]").forEach((el) => { el.hidden = false; });
        }
        return;
      }
      const state = data.state || {};
      const set = (field, value) => root.querySelectorAll('[data-pool-field="' + field + '"]').forEach((el) => text(el, value));
      set("ready", state.readyReplicas + "/" + state.replicas);
      set("currentReplicas", state.currentReplicas);
      set("availableReplicas", state.availableReplicas);
      set("replicas", state.replicas);
      set("resourceVersion", state.resourceVersion);
      document.querySelectorAll('[data-testid="pool-scale-replicas"]').forEach((el) => {
        // Follows the count until the user edits it (see workloads.js).
        if (root.dataset.testid === "pool-detail" && document.activeElement !== el) el.defaultValue = state.replicas;
      });
      const message = state.message || "";
      root.querySelectorAll("[data-live-hide-empty]").forEach((el) => { el.hidden = !message; el.title = message; });
      root.querySelectorAll('[data-live-show-with="message"]').forEach((el) => { el.hidden = !message; });
      set("warm", state.warmReplicas + "/" + state.warm);
      if (Array.isArray(state.members)) drawMembers(root, state.members);
      if (root.dataset.testid === "pool-detail") drawRollout(state);
    });
  }

  // The template card: "Template N: updated X of Y", its bar, the update's message and
  // which of pause/resume applies.
  function drawRollout(state) {
    const card = document.querySelector('[data-testid="pool-template"]');
    if (!card) return;
    card.querySelectorAll('[data-pool-field="rollout"]').forEach((el) => text(el, interpolate(
      gettext("Template %(generation)s: updated %(updated)s of %(replicas)s"),
      { generation: state.templateGeneration, updated: state.updatedReplicas, replicas: state.replicas }, true)));
    const bar = card.querySelector("[data-pool-progress]");
    if (bar) {
      bar.setAttribute("aria-valuemax", state.replicas);
      bar.setAttribute("aria-valuenow", state.updatedReplicas);
      const fill = bar.querySelector(".progress-bar");
      if (fill) fill.style.width = (state.replicas ? Math.round(100 * state.updatedReplicas / state.replicas) : 100) + "%";
    }
    card.querySelectorAll('[data-pool-field="rolloutMessage"]').forEach((el) => {
      text(el, state.rolloutMessage || "");
      el.hidden = !state.rolloutMessage;
    });
    card.querySelectorAll("[data-pool-pause]").forEach((el) => { el.hidden = !state.updating || state.paused; });
    card.querySelectorAll("[data-pool-resume]").forEach((el) => { el.hidden = !state.paused; });
  }

  // The autoscaler's chart: the pool's replicas (stepped, left axis) and the measured
  // utilisation with its target (percent, right axis), one point per run.
  let chart = null;

  function chartData(history, target) {
    const replicas = history.map((p) => ({ x: p.t * 1000, y: p.replicas }));
    const metric = history.filter((p) => p.metric !== null && p.metric !== undefined).map((p) => ({ x: p.t * 1000, y: p.metric }));
    const goal = history.length ? [{ x: history[0].t * 1000, y: target }, { x: history[history.length - 1].t * 1000, y: target }] : [];
    return [replicas, metric, goal];
  }

  function drawChart(history, target) {
    const canvas = document.querySelector("[data-autoscaler-chart]");
    if (!canvas || !window.Chart) return;
    const data = chartData(history || [], target);
    const empty = document.querySelector("[data-autoscaler-chart-empty]");
    if (empty) empty.hidden = (history || []).length > 0;
    if (chart) {
      data.forEach((points, i) => { chart.data.datasets[i].data = points; });
      chart.update("none");
      return;
    }
    const locale = [document.documentElement.lang || "en"];
    chart = new window.Chart(canvas, {
      type: "line",
      data: {
        datasets: [
          { label: gettext("Replicas"), data: data[0], yAxisID: "replicas", stepped: true, borderColor: "#4f46e5", backgroundColor: "#4f46e522", fill: true, pointRadius: 0, borderWidth: 2 },
          { label: gettext("Measured %"), data: data[1], yAxisID: "metric", borderColor: "#ea580c", pointRadius: 0, borderWidth: 1.5, tension: 0.25 },
          { label: gettext("Target %"), data: data[2], yAxisID: "metric", borderColor: "#64748b", borderDash: [4, 4], pointRadius: 0, borderWidth: 1 },
        ],
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        parsing: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { labels: { boxWidth: 10 } } },
        scales: {
          x: { type: "linear", ticks: { maxTicksLimit: 6, callback: (v) => new Date(v).toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" }) } },
          replicas: { position: "left", beginAtZero: true, suggestedMax: 4, ticks: { precision: 0 } },
          metric: { position: "right", beginAtZero: true, suggestedMax: 100, grid: { drawOnChartArea: false } },
        },
      },
    });
  }

  function initialChart() {
    const canvas = document.querySelector("[data-autoscaler-chart]");
    const source = document.getElementById("autoscaler-history");
    if (!canvas || !source) return;
    drawChart(JSON.parse(source.textContent), Number(canvas.dataset.target));
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", initialChart);
  else initialChart();

  function applyAutoscaler(data) {
    const panel = document.querySelector('[data-autoscaler="' + CSS.escape(data.name) + '"]');
    if (!panel || data.deleted) return;
    const state = data.state || {};
    const set = (field, value) => panel.querySelectorAll('[data-as-field="' + field + '"]').forEach((el) => text(el, value));
    set("currentMetric", state.currentMetric === null || state.currentMetric === undefined ? "—" : state.currentMetric + "%");
    set("reason", state.reason || gettext("not run yet"));
    set("message", state.message || "");
    const count = (value) => (value === null || value === undefined ? "—" : String(value));
    set("currentReplicas", count(state.currentReplicas));
    set("desiredReplicas", count(state.desiredReplicas));
    const conditions = panel.querySelector("[data-as-conditions]");
    if (conditions && Array.isArray(state.conditions) && state.conditions.length) {
      conditions.replaceChildren();
      state.conditions.forEach((c) => {
        const line = document.createElement("div");
        const pair = document.createElement("span");
        pair.className = "iso-kv";
        pair.textContent = c.type + "=" + c.status;
        line.appendChild(pair);
        line.appendChild(document.createTextNode(" " + c.reason));
        conditions.appendChild(line);
      });
    }
    if (Array.isArray(state.history)) drawChart(state.history, state.target);
    const body = panel.querySelector("[data-decisions]");
    if (!body || !Array.isArray(state.decisions)) return;
    body.replaceChildren();
    state.decisions.forEach((d) => {
      const row = document.createElement("tr");
      const when = document.createElement("time");
      when.dataset.ago = "";
      when.setAttribute("datetime", d.time);
      when.textContent = window.Isotope && window.Isotope.time ? window.Isotope.time.ago(d.time) : d.time;
      cell(row, when).className = "small text-nowrap";
      cell(row, d.from + " → " + d.to).className = "font-monospace";
      cell(row, d.metric === null || d.metric === undefined ? "—" : d.metric + "%").className = "font-monospace";
      cell(row, d.message).className = "small";
      body.appendChild(row);
    });
    const empty = panel.querySelector("[data-decisions-empty]");
    if (empty) empty.hidden = state.decisions.length > 0;
  }

  document.addEventListener("isotope:resource", (event) => {
    const data = event.detail && event.detail.data;
    if (!data) return;
    if (data.kind === "vmpool") applyPool(data);
    else if (data.kind === "autoscaler") applyAutoscaler(data);
  });
})();
