// The VM page's Snapshots panel (templates/compute/_vm_snapshots.html): live.js sets
// each disk snapshot's phase and message; here a VM snapshot's row takes its phase and
// buttons from its disks (compute.services.snapshots.VMSnapshot words the phase the
// same way), a VM snapshot taken elsewhere (the API, a schedule) gets a row, a deleted
// one loses it, and the take and clone forms follow the VM's phase: snapshots and
// clones only of a stopped VM. Without JavaScript the page still works (reload).
(function () {
  "use strict";

  const tenant = document.body.dataset.liveTenant;
  const PHASE_ORDER = ["Failed", "Deleting", "Restoring", "Pending"];
  const label = (phase) => (window.Isotope && window.Isotope.phaseLabel ? window.Isotope.phaseLabel(phase) : phase);

  function groupPhase(disks) {
    const phases = disks.map((d) => d.querySelector('[data-live-field="phase"]').dataset.phase);
    return PHASE_ORDER.find((p) => phases.indexOf(p) !== -1) || "Ready";
  }

  function refreshGroup(row) {
    const disks = Array.from(row.querySelectorAll("[data-snapshot-disk]"));
    if (!disks.length) { row.remove(); return; }
    const phase = groupPhase(disks);
    const badge = row.querySelector("[data-snapshot-group-phase]");
    badge.textContent = label(phase);
    badge.dataset.phase = phase;
    row.querySelector("[data-snapshot-size]").textContent =
      disks.reduce((sum, d) => sum + Number(d.dataset.size || 0), 0);
    // A VM snapshot is backed up once all its disks are Ready.
    row.querySelectorAll("[data-snapshot-backup]").forEach((el) => { el.hidden = phase !== "Ready"; });
    // A VM snapshot's action is offered when every disk allows it.
    row.querySelectorAll("[data-snapshot-action]").forEach((el) => {
      const action = el.dataset.snapshotAction;
      el.hidden = !disks.every((d) => (d.dataset.actions || "").split(" ").indexOf(action) !== -1);
    });
  }

  function syncEmpty(panel) {
    const empty = panel.querySelector("[data-snapshots-empty]");
    if (empty) empty.hidden = panel.querySelector("[data-snapshot-rows]").children.length > 0;
  }

  function groupRow(panel, name, state) {
    const rows = panel.querySelector("[data-snapshot-rows]");
    let row = rows.querySelector('[data-snapshot-group="' + CSS.escape(name) + '"]');
    if (row) return row;
    const vm = panel.dataset.vmSnapshots;
    row = panel.querySelector("template[data-snapshot-group-row]").content.firstElementChild.cloneNode(true);
    row.dataset.snapshotGroup = name;
    row.dataset.testid = "vm-snapshot-" + name;
    row.querySelector("[data-snapshot-name]").textContent = name;
    row.querySelector("[data-snapshot-created]").textContent =
      (state.created || "").replace("T", " ").replace(/\.\d+/, "").replace(/(\+00:00|Z)$/, "");
    const base = "/t/" + encodeURIComponent(tenant) + "/vms/" + encodeURIComponent(vm) +
      "/snapshots/" + encodeURIComponent(name) + "/";
    row.querySelectorAll("[data-snapshot-action]").forEach((el) => {
      el.href = base + el.dataset.snapshotAction + "/";
    });
    row.querySelectorAll("[data-snapshot-backup]").forEach((el) => { el.href = base + "backup/"; });
    rows.prepend(row);
    return row;
  }

  function diskItem(panel, row, liveName, state) {
    const sel = '[data-snapshot-disk][data-live-name="' + CSS.escape(liveName) + '"]';
    let item = row.querySelector(sel);
    if (item) return item;
    item = panel.querySelector("template[data-snapshot-disk-item]").content.firstElementChild.cloneNode(true);
    item.dataset.liveName = liveName;
    item.querySelector("[data-snapshot-volume]").textContent = state.volume;
    const phase = item.querySelector('[data-live-field="phase"]');
    phase.textContent = label(state.phase);
    phase.dataset.phase = state.phase;
    row.querySelector("[data-snapshot-disks]").appendChild(item);
    return item;
  }

  document.addEventListener("isotope:resource", (event) => {
    const data = event.detail && event.detail.data;
    if (!data || data.kind !== "snapshot") return;
    const state = data.state || {};
    document.querySelectorAll("[data-vm-snapshots]").forEach((panel) => {
      const role = panel.dataset.liveRole;
      if (data.deleted) {
        // volumes.js may have removed the disk's element already: recount every row.
        panel.querySelectorAll('[data-snapshot-disk][data-live-name="' + CSS.escape(data.name) + '"]')
          .forEach((item) => item.remove());
        panel.querySelectorAll("[data-snapshot-group]").forEach(refreshGroup);
      } else if (state.vm === panel.dataset.vmSnapshots) {
        // Only a new snapshot (Pending) gets a row: states can arrive out of order, and
        // a late Deleting one must not bring back a row its deletion removed.
        const known = panel.querySelector('[data-snapshot-group="' + CSS.escape(state.name) + '"]');
        if (!known && state.phase !== "Pending") return;
        const row = groupRow(panel, state.name, state);
        const item = diskItem(panel, row, data.name, state);
        item.dataset.size = state.sizeGiB;
        item.dataset.actions = ((state.actionsByRole || {})[role] || []).join(" ");
        refreshGroup(row);
      }
      syncEmpty(panel);
    });
  });

  // volumes.js drops a disk's element when a resync finds the snapshot gone: recount.
  document.querySelectorAll("[data-vm-snapshots]").forEach((panel) => {
    const rows = panel.querySelector("[data-snapshot-rows]");
    new MutationObserver((records) => {
      const gone = records.some((r) => Array.from(r.removedNodes).some((n) => n.dataset && n.dataset.snapshotDisk !== undefined));
      if (!gone) return;
      rows.querySelectorAll("[data-snapshot-group]").forEach(refreshGroup);
      syncEmpty(panel);
    }).observe(rows, { childList: true, subtree: true });
  });

  // Clones are made and snapshots restored only while the VM is stopped; a snapshot is
  // taken while it is stopped, running or paused (its memory only while it runs): the
  // forms follow the VM's phase, and the notes say why they are off.
  document.addEventListener("isotope:resource", (event) => {
    const data = event.detail && event.detail.data;
    if (!data || data.kind !== "vm" || data.deleted) return;
    const phase = (data.state || {}).phase;
    if (!phase) return;
    const stopped = phase === "Stopped";
    const of = (attr) => document.querySelectorAll("[" + attr + '="' + CSS.escape(data.name) + '"]');
    of("data-needs-stopped").forEach((el) => { el.disabled = !stopped; });
    const running = phase === "Running" || phase === "Paused";
    of("data-needs-settled").forEach((el) => { el.disabled = !(stopped || running); });
    of("data-needs-running").forEach((el) => {
      el.disabled = !running;
      if (!running) el.checked = false;
    });
    of("data-stopped-note").forEach((el) => { el.hidden = stopped; });
    of("data-stopped-phase").forEach((el) => { el.textContent = label(phase).toLowerCase(); });
  });
})();
