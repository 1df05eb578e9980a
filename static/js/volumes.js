// Volume pages and the VM page's volumes panel: apply live volume states (from
// compute.services.volumes.volume_state) that live.js leaves to the page — buttons by
// role, size, attachment, message visibility, deletion — and keep each VM panel's rows
// in step with what is attached to that VM. The create form shows the local-only fields
// only for local volumes. Without JavaScript every page still works (reload).
(function () {
  "use strict";

  const tenant = document.body.dataset.liveTenant;

  function volumeUrl(name) {
    return "/t/" + encodeURIComponent(tenant) + "/volumes/" + encodeURIComponent(name) + "/";
  }

  function vmUrl(name) {
    return "/t/" + encodeURIComponent(tenant) + "/vms/" + encodeURIComponent(name) + "/";
  }

  function setPhase(el, phase) {
    el.textContent = (window.Isotope && window.Isotope.phaseLabel) ? window.Isotope.phaseLabel(phase) : phase;
    el.dataset.phase = phase;
  }

  function roleOf(el) {
    const scope = el.closest("[data-live-role]");
    return scope ? scope.dataset.liveRole : "";
  }

  function actionsFor(el, state) {
    const byRole = state.actionsByRole || {};
    return byRole[roleOf(el)] || [];
  }

  // Rows and pages of one volume (list, detail): data-live-kind="volume".
  function patchVolume(root, state) {
    const actions = actionsFor(root, state);
    root.querySelectorAll("[data-live-action]").forEach((el) => {
      el.hidden = actions.indexOf(el.dataset.liveAction) === -1;
    });
    const message = state.message || "";
    root.querySelectorAll("[data-live-hide-empty]").forEach((el) => {
      el.hidden = !message;
      el.title = message;
    });
    root.querySelectorAll('[data-live-show-with="message"]').forEach((el) => { el.hidden = !message; });
    root.querySelectorAll("[data-volume-size]").forEach((el) => { el.textContent = state.sizeGiB; });
    root.querySelectorAll("[data-volume-capacity]").forEach((el) => { el.textContent = state.capacityGiB; });
    root.querySelectorAll('[data-live-field="resourceVersion"]').forEach((el) => {
      el.textContent = state.resourceVersion;
    });
    root.querySelectorAll("[data-volume-attachment]").forEach((el) => {
      el.replaceChildren();
      if (!state.vm) {
        const none = document.createElement("span");
        none.className = "text-body-secondary";
        none.textContent = "—";
        el.appendChild(none);
        return;
      }
      const link = document.createElement("a");
      link.href = vmUrl(state.vm);
      link.textContent = state.vm;
      const device = document.createElement("span");
      device.className = "font-monospace small text-body-secondary";
      device.textContent = state.device;
      el.append(link, " ", device);
    });
  }

  // A row of a VM's volumes panel.
  function patchPanelRow(row, name, state) {
    row.dataset.volumeRow = name;
    row.dataset.testid = "vm-volume-" + name;
    const device = row.querySelector("[data-volume-device]");
    if (device && !device.children.length) device.textContent = state.device;
    const link = row.querySelector("[data-volume-link]");
    if (link) { link.href = volumeUrl(name); link.textContent = name; }
    const serial = row.querySelector("[data-volume-serial]");
    if (serial) serial.textContent = state.serial || "";
    row.querySelectorAll("[data-volume-size]").forEach((el) => { el.textContent = state.sizeGiB; });
    row.querySelectorAll('[data-volume-field="phase"]').forEach((el) => setPhase(el, state.phase));
    row.querySelectorAll('[data-volume-field="message"]').forEach((el) => { el.textContent = state.message || ""; });
    const actions = actionsFor(row, state);
    row.querySelectorAll("[data-volume-action]").forEach((el) => {
      if (el.tagName === "FORM" && !el.getAttribute("action")) {
        // A row made here from the template: point its form at this volume.
        el.action = volumeUrl(name) + el.dataset.volumeAction + "/";
        el.dataset.confirm = "Detach " + name + " from " + state.vm + "? A running guest " +
          "loses the disk at once: unmount it in the guest first.";
      }
      el.hidden = actions.indexOf(el.dataset.volumeAction) === -1;
    });
  }

  function syncPanels(name, state, deleted) {
    document.querySelectorAll("[data-vm-volumes]").forEach((panel) => {
      const vm = panel.dataset.vmVolumes;
      const rows = panel.querySelector("[data-vm-volume-rows]");
      let row = rows.querySelector('[data-volume-row="' + CSS.escape(name) + '"]');
      const here = !deleted && state && state.vm === vm;
      if (!here) {
        if (row) row.remove();
      } else {
        if (!row) {
          const template = panel.querySelector("template[data-vm-volume-row]");
          row = template.content.firstElementChild.cloneNode(true);
          rows.appendChild(row);
        }
        patchPanelRow(row, name, state);
      }
      // A volume attached somewhere (or gone) is not on offer here; one that comes free
      // is again. Disabled, not removed: removing the chosen option made the browser
      // choose the next one without a word, and Attach attached that volume instead.
      // The chosen one taken, the list shows its placeholder ("Choose a volume"),
      // which the browser does not send (the select is required).
      panel.querySelectorAll('select[name="volume"]').forEach((select) => {
        const option = Array.from(select.options).find((o) => o.value === name);
        if (!option) return;
        const taken = !!deleted || !!(state && state.vm);
        option.disabled = taken;
        if (taken && option.selected) select.value = "";
      });
      const empty = panel.querySelector("[data-vm-volumes-empty]");
      if (empty) empty.hidden = rows.children.length > 0;
    });
  }

  document.addEventListener("isotope:resource", (event) => {
    const data = event.detail && event.detail.data;
    if (!data || data.kind !== "volume") return;
    const sel = '[data-live-kind="volume"][data-live-name="' + CSS.escape(data.name) + '"]';
    document.querySelectorAll(sel).forEach((root) => {
      if (data.deleted) {
        root.dataset.liveDeleted = "1";
        if (root.dataset.testid === "volume-detail") {
          document.querySelectorAll("[data-live-show-when-deleted]").forEach((el) => { el.hidden = false; });
        }
        return;
      }
      patchVolume(root, data.state || {});
    });
    syncPanels(data.name, data.state, data.deleted);
  });

  // Snapshot rows of the volume page (compute.services.snapshots.snapshot_state):
  // live.js sets phase and message; buttons follow the viewer's role, a deleted
  // snapshot's row goes.
  document.addEventListener("isotope:resource", (event) => {
    const data = event.detail && event.detail.data;
    if (!data || data.kind !== "snapshot") return;
    const sel = '[data-live-kind="snapshot"][data-live-name="' + CSS.escape(data.name) + '"]';
    document.querySelectorAll(sel).forEach((row) => {
      if (data.deleted) { row.remove(); return; }
      const actions = actionsFor(row, data.state || {});
      row.querySelectorAll("[data-live-action]").forEach((el) => {
        el.hidden = actions.indexOf(el.dataset.liveAction) === -1;
      });
    });
  });

  // A resync snapshot lists the resources that exist: a snapshot row missing from it may
  // have been deleted while the page was not listening (a deletion takes a second): ask
  // the API, and drop the row on a 404.
  document.addEventListener("isotope:snapshot", (event) => {
    const frame = event.detail || {};
    if (!tenant || frame.stream !== "tenant." + tenant) return;
    const known = new Set(
      ((frame.data && frame.data.resources) || []).filter((r) => r.kind === "snapshot").map((r) => r.name)
    );
    document.querySelectorAll('[data-live-kind="snapshot"][data-live-name]').forEach((row) => {
      const name = row.dataset.liveName;
      if (known.has(name)) return;
      const [volume, snapshot] = name.split("/");
      const url = "/api/v1/tenants/" + encodeURIComponent(tenant) + "/volumes/" +
        encodeURIComponent(volume) + "/snapshots/" + encodeURIComponent(snapshot) + "/";
      window.Isotope.live.check(url, () => row.remove());
    });
  });

  // The create form: format, image and VM only mean something for local volumes.
  const classes = document.querySelector("[data-storage-class]");
  const localOnly = document.querySelector("[data-local-only]");
  if (classes && localOnly) {
    const sync = () => {
      const checked = classes.querySelector("input[type=radio]:checked");
      localOnly.hidden = !!checked && checked.value !== "local";
    };
    classes.addEventListener("change", sync);
    sync();
  }
})();
