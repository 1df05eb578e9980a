// The Backups page (templates/compute/backup_list.html): live.js sets each backup's
// phase and message; here its progress bar, size and buttons (by the reader's role)
// follow compute.services.backups.backup_state, a backup made elsewhere (the API, another
// tab) gets a row, and a deleted one loses it. Without JavaScript the page still works
// (reload). The list is paged, newest first: a new backup belongs at the top of the first
// page, so only that page (unsearched) gives it a row; another page leaves it out, as the
// VM list leaves out VMs that are not on its page.
(function () {
  "use strict";

  const tenant = document.body.dataset.liveTenant;
  const table = document.querySelector("[data-testid=backup-table]");
  if (!table) return;
  const rows = table.querySelector("[data-backup-rows]");
  const role = table.dataset.liveRole;

  function size(bytes) {
    if (!bytes) return "—";
    const units = ["bytes", "KB", "MB", "GB", "TB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return (unit ? value.toFixed(1) : String(value)) + " " + units[unit];
  }

  function syncEmpty() {
    // Only a page that is the whole list knows that no backup is left.
    if (rows.dataset.backupWhole === undefined) return;
    const empty = document.querySelector("[data-backups-empty]");
    if (empty) empty.hidden = rows.children.length > 0;
  }

  function newRow(name, state) {
    const template = table.parentElement.parentElement.querySelector("template[data-backup-template]");
    const row = template.content.firstElementChild.cloneNode(true);
    row.dataset.liveName = name;
    row.dataset.backupRow = name;
    row.setAttribute("data-testid", "backup-" + name);
    row.querySelector("[data-backup-name]").textContent = name;
    row.querySelector("[data-backup-vm]").textContent = state.vm || "";
    row.querySelector("[data-backup-snapshot]").textContent = state.snapshot || "";
    row.querySelector("[data-backup-created]").textContent =
      (state.created || "").replace("T", " ").replace(/\.\d+/, "").replace(/(\+00:00|Z)$/, "");
    const phase = row.querySelector('[data-live-field="phase"]');
    phase.dataset.phase = state.phase;
    phase.textContent = window.Isotope && window.Isotope.phaseLabel ? window.Isotope.phaseLabel(state.phase) : state.phase;
    const base = "/t/" + encodeURIComponent(tenant) + "/backups/" + encodeURIComponent(name) + "/";
    row.querySelectorAll("[data-backup-action]").forEach((el) => { el.href = base + el.dataset.backupAction + "/"; });
    rows.prepend(row);
    return row;
  }

  document.addEventListener("isotope:resource", (event) => {
    const data = event.detail && event.detail.data;
    if (!data || data.kind !== "backup") return;
    let row = rows.querySelector('[data-backup-row="' + CSS.escape(data.name) + '"]');
    if (data.deleted) {
      if (row) row.remove();
      syncEmpty();
      return;
    }
    const state = data.state || {};
    if (!row) {
      // Only a new backup gets a row: a late state must not bring back a deleted one.
      if (state.phase !== "Pending" && state.phase !== "Exporting") return;
      if (rows.dataset.backupFirstPage === undefined) return;
      row = newRow(data.name, state);
    }
    const percent = Math.max(0, Math.min(100, Number(state.progress) || 0));
    const bar = row.querySelector("[data-backup-progress]");
    bar.setAttribute("aria-valuenow", String(percent));
    bar.querySelector(".progress-bar").style.width = percent + "%";
    row.querySelector("[data-backup-percent]").textContent = String(percent);
    row.querySelector("[data-backup-size]").textContent = size(state.sizeBytes);
    const actions = (state.actionsByRole || {})[role] || [];
    row.querySelectorAll("[data-backup-action]").forEach((el) => {
      el.hidden = actions.indexOf(el.dataset.backupAction) === -1;
    });
    syncEmpty();
  });

  // A resync lists what exists: a row it lacks may have been deleted while the page
  // was loading (its "deleted" message came before the page listened). Ask the API.
  document.addEventListener("isotope:snapshot", (event) => {
    const frame = event.detail || {};
    if (!tenant || frame.stream !== "tenant." + tenant) return;
    const known = new Set(
      ((frame.data && frame.data.resources) || []).filter((r) => r.kind === "backup").map((r) => r.name)
    );
    rows.querySelectorAll("[data-backup-row]").forEach((row) => {
      const name = row.dataset.backupRow;
      if (known.has(name)) return;
      const url = "/api/v1/tenants/" + encodeURIComponent(tenant) + "/backups/" + encodeURIComponent(name) + "/";
      window.Isotope.live.check(url, () => { row.remove(); syncEmpty(); });
    });
  });
})();
