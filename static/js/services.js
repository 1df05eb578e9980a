// The Services pages: apply live service states (compute.services.load_balancers.
// service_state) that live.js leaves to the page — the phase, the ready/total count
// of the list's rows, and the detail page's cluster IP and members table as VMs start
// and stop and pods come and go. Without JavaScript both pages still work (reload).
(function () {
  "use strict";

  const tenant = document.body.dataset.liveTenant;

  function phaseText(phase) {
    return window.Isotope && window.Isotope.phaseLabel ? window.Isotope.phaseLabel(phase) : phase;
  }

  function setPhase(el, phase) {
    el.textContent = phaseText(phase);
    el.dataset.phase = phase;
  }

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    if (text !== undefined) td.textContent = text;
    return td;
  }

  function memberRow(member) {
    const row = document.createElement("tr");
    row.setAttribute("data-testid", "member-" + member.name);
    const isPod = member.kind === "Pod";
    row.appendChild(cell(isPod ? gettext("Pod") : gettext("VM")));
    const name = cell();
    const link = document.createElement("a");
    const base = "/t/" + encodeURIComponent(tenant);
    link.href = isPod
      ? base + "/workloads/" + encodeURIComponent(member.owner) + "/"
      : base + "/vms/" + encodeURIComponent(member.name) + "/";
    link.textContent = member.name;
    name.appendChild(link);
    row.appendChild(name);
    row.appendChild(cell(member.address, "font-monospace"));
    const ready = cell();
    const badge = document.createElement("span");
    badge.className = member.ready ? "badge text-bg-success" : "badge text-bg-warning";
    badge.textContent = member.ready ? gettext("Ready") : gettext("Not ready");
    ready.appendChild(badge);
    row.appendChild(ready);
    return row;
  }

  function emptyRow() {
    const row = document.createElement("tr");
    row.setAttribute("data-service-members-empty", "");
    const td = cell(gettext("No members: no running VM or pod carries the selector's labels."),
      "text-body-secondary");
    td.colSpan = 4;
    td.setAttribute("data-testid", "service-members-empty");
    row.appendChild(td);
    return row;
  }

  function patchDetail(panel, state) {
    document.querySelectorAll("[data-service-detail-field]").forEach((el) => {
      const field = el.dataset.serviceDetailField;
      if (field === "phase") setPhase(el, state.phase);
      else if (field === "clusterIP") el.textContent = state.clusterIP || "—";
      else if (field === "nodePorts") {
        el.textContent = Object.entries(state.nodePorts || {})
          .map(([name, port]) => (name || "—") + ": " + port).join(", ");
      } else if (field in state) el.textContent = state[field] || "";
    });
    const body = document.querySelector("[data-service-members]");
    if (!body) return;
    const rows = (state.endpoints || []).map(memberRow);
    body.replaceChildren(...(rows.length ? rows : [emptyRow()]));
  }

  function onService(data) {
    const row = document.querySelector('[data-service-row="' + CSS.escape(data.name) + '"]');
    const panel = document.querySelector('[data-service-detail="' + CSS.escape(data.name) + '"]');
    if (data.deleted) {
      if (row) row.remove();
      return;
    }
    const state = data.state;
    if (row) {
      row.querySelectorAll("[data-service-field]").forEach((el) => {
        if (el.dataset.serviceField === "phase") setPhase(el, state.phase);
        else if (el.dataset.serviceField === "ready") {
          el.textContent = state.readyMembers + "/" + state.members;
        }
      });
    }
    if (panel) patchDetail(panel, state);
  }

  document.addEventListener("isotope:resource", (event) => {
    const data = event.detail.data;
    if (!data || data.tenant !== tenant || data.kind !== "service") return;
    onService(data);
  });

  // The change form's ports table: "Add a port" appends a blank row (the formset's
  // empty form, numbered) and counts it in the management form. Without JavaScript the
  // table always ends with one blank row, which adds a port when filled.
  const add = document.querySelector("[data-port-add]");
  const template = document.querySelector("template[data-port-template]");
  const rows = document.querySelector("[data-port-rows]");
  const total = document.querySelector('input[name="ports-TOTAL_FORMS"]');
  const most = document.querySelector('input[name="ports-MAX_NUM_FORMS"]');
  if (add && template && rows && total) {
    const full = () => most && Number(total.value) >= Number(most.value);
    add.hidden = false;
    add.disabled = full();
    add.addEventListener("click", () => {
      if (full()) return;
      const index = Number(total.value);
      const html = template.innerHTML
        .replace(/__prefix__/g, String(index))
        .replace(/__number__/g, String(index + 1));
      rows.insertAdjacentHTML("beforeend", html);
      total.value = String(index + 1);
      add.disabled = full();
      const first = rows.lastElementChild && rows.lastElementChild.querySelector("input, select");
      if (first) first.focus();
    });
  }
})();
