// The Networks page and the VM page's interfaces panel: apply live network and
// interface states (compute.services.networks.network_state / nic_state), which
// live.js leaves to the page — phases, messages, addresses as the DHCP leases appear,
// security groups (and the "Edit groups" form's boxes), buttons by role, interfaces
// added or removed by someone else. Without JavaScript both pages still work (reload).
(function () {
  "use strict";

  const tenant = document.body.dataset.liveTenant;

  function setPhase(el, phase) {
    el.textContent = window.Isotope && window.Isotope.phaseLabel ? window.Isotope.phaseLabel(phase) : phase;
    el.dataset.phase = phase;
  }

  function actionsFor(el, state) {
    const scope = el.closest("[data-live-role]");
    const byRole = state.actionsByRole || {};
    return byRole[scope ? scope.dataset.liveRole : ""] || [];
  }

  function addressesText(state) {
    if (state.addresses && state.addresses.length) return state.addresses.join(", ");
    return state.fixedIP ? interpolate(gettext("%(ip)s (reserved)"), { ip: state.fixedIP }, true) : "—";
  }

  function setGroups(el, names) {
    el.textContent = "";
    names.forEach((name, index) => {
      if (index) el.appendChild(document.createTextNode(", "));
      const link = document.createElement("a");
      link.href = "/t/" + encodeURIComponent(tenant) + "/securitygroups/" + encodeURIComponent(name) + "/";
      link.textContent = name;
      el.appendChild(link);
    });
  }

  function patchNic(row, state) {
    row.querySelectorAll("[data-nic-field]").forEach((el) => {
      const field = el.dataset.nicField;
      if (field === "phase") setPhase(el, state.phase);
      else if (field === "addresses") el.textContent = addressesText(state);
      else if (field === "securityGroups") setGroups(el, state.securityGroups || []);
      else if (field in state) el.textContent = state[field] || "";
    });
    // The "Edit groups" form shows the groups it is in now (unless it is being edited).
    const edit = row.querySelector("details[data-nic-action='groups']");
    if (edit && !edit.open) {
      edit.querySelectorAll("input[name='security_groups']").forEach((box) => {
        box.checked = (state.securityGroups || []).indexOf(box.value) !== -1;
      });
    }
    const actions = actionsFor(row, state);
    row.querySelectorAll("[data-nic-action]").forEach((el) => {
      el.hidden = actions.indexOf(el.dataset.nicAction) === -1;
    });
  }

  function newNicRow(panel, state) {
    const template = panel.querySelector("template[data-nic-template]");
    const rows = panel.querySelector("[data-nic-rows]");
    if (!template || !rows) return null;
    const row = template.content.firstElementChild.cloneNode(true);
    row.dataset.nicRow = state.name;
    row.dataset.testid = "nic-" + state.name;
    row.setAttribute("data-testid", "nic-" + state.name);
    const form = row.querySelector("form[data-nic-action]");
    if (form) {
      form.action = "/t/" + encodeURIComponent(tenant) + "/vms/" + encodeURIComponent(state.vm) +
        "/nics/" + encodeURIComponent(state.name) + "/remove/";
      form.dataset.confirm = interpolate(
        gettext("Remove %(nic)s (%(mac)s) from %(name)s? A running guest loses the interface at once."),
        { nic: state.name, mac: state.mac, name: state.vm }, true);
    }
    const groups = row.querySelector("form[data-nic-groups-form]");
    if (groups) {
      const base = "/t/" + encodeURIComponent(tenant) + "/vms/" + encodeURIComponent(state.vm) +
        "/nics/" + encodeURIComponent(state.name) + "/";
      groups.action = base + "groups/";
      groups.querySelectorAll(".form-check").forEach((check) => {
        const box = check.querySelector("input");
        box.id = "nic-" + state.name + "-sg-" + box.value;
        check.querySelector("label").htmlFor = box.id;
      });
    }
    rows.appendChild(row);
    return row;
  }

  function onNic(data) {
    const [vm, name] = data.name.split("/");
    document.querySelectorAll('[data-vm-nics="' + CSS.escape(vm) + '"]').forEach((panel) => {
      let row = panel.querySelector('[data-nic-row="' + CSS.escape(name) + '"]');
      if (data.deleted) {
        if (row) row.remove();
      } else {
        row = row || newNicRow(panel, data.state);
        if (row) patchNic(row, data.state);
      }
      const empty = panel.querySelector("[data-nic-empty]");
      if (empty) empty.hidden = panel.querySelector("[data-nic-row]") !== null;
    });
  }

  function onNetwork(data) {
    const row = document.querySelector('[data-network-row="' + CSS.escape(data.name) + '"]');
    if (!row) return;
    if (data.deleted) {
      row.remove();
      return;
    }
    const state = data.state;
    row.querySelectorAll("[data-network-field]").forEach((el) => {
      const field = el.dataset.networkField;
      if (field === "phase") setPhase(el, state.phase);
      else if (field in state) el.textContent = state[field];
    });
    const actions = actionsFor(row, state);
    row.querySelectorAll("[data-network-action]").forEach((el) => {
      el.hidden = actions.indexOf(el.dataset.networkAction) === -1;
    });
  }

  // A row whose deletion was announced while the page was not listening: ask the API
  // (retried while the server cannot say; the page says it may be out of date).
  function dropIfGone(row, url) {
    window.Isotope.live.check(url, () => row.remove());
  }

  document.addEventListener("isotope:snapshot", (event) => {
    const frame = event.detail || {};
    if (!tenant || frame.stream !== "tenant." + tenant) return;
    const resources = (frame.data && frame.data.resources) || [];
    const known = new Set(resources.map((r) => r.kind + ":" + r.name));
    const api = "/api/v1/tenants/" + encodeURIComponent(tenant);
    document.querySelectorAll("[data-network-row]").forEach((row) => {
      const name = row.dataset.networkRow;
      if (!known.has("network:" + name)) dropIfGone(row, api + "/networks/" + encodeURIComponent(name) + "/");
    });
    document.querySelectorAll("[data-vm-nics]").forEach((panel) => {
      const vm = panel.dataset.vmNics;
      panel.querySelectorAll("[data-nic-row]").forEach((row) => {
        const name = row.dataset.nicRow;
        if (known.has("nic:" + vm + "/" + name)) return;
        dropIfGone(row, api + "/virtualmachines/" + encodeURIComponent(vm) + "/nics/" +
          encodeURIComponent(name) + "/");
      });
    });
  });

  document.addEventListener("isotope:resource", (event) => {
    const data = event.detail.data;
    if (!data || data.tenant !== tenant) return;
    if (data.kind === "nic") onNic(data);
    else if (data.kind === "network") onNetwork(data);
  });
})();
