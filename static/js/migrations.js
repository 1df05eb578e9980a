// Live migration panel of the VM page: draws the "migration" resource states that
// live.js receives on the tenant stream (several per second while a job runs) as a
// progress bar with bytes, speed and ETA. The Migrate form is sent in place, so the
// page keeps its console and its live stream (and the live region reads the VM's
// phase changes out); once a migration ends, the history and the VM's host are
// fetched from the server and swapped in, without a reload. The Migrate form follows
// the VM's live phase: shown while the VM is Running and no migration of it is under way.
(function () {
  "use strict";
  const panel = document.querySelector("[data-migration-vm]");
  if (!panel) return;
  const vmName = panel.dataset.migrationVm;
  const diskGib = parseInt(panel.dataset.vmDiskGib || "0", 10);
  const copiedGib = parseInt(panel.dataset.vmCopiedGib || "0", 10);
  const current = panel.querySelector("[data-migration-current]");
  const form = panel.querySelector("[data-migrate-form]");
  const idle = panel.querySelector("[data-migrate-idle]");
  const cancel = panel.querySelector("[data-cancel-form]");
  const note = panel.querySelector("[data-migrate-note]");
  let phase = panel.dataset.vmPhase;
  let migrating = !current.hidden;
  // Each migration of this VM the live stream told about, by uid: whether it was still
  // under way. The stream is newer than a Migrate reply that comes after it (a migration
  // that failed at once can end before its reply arrives), so the reply does not undo it.
  const live = new Map();
  // Waits before each new try when the page could not be fetched after a migration ended.
  const RETRY_MS = [1000, 2000, 4000];
  let refreshes = 0; // the latest refresh's number: an older one's answers and retries stop
  let retryTimer = null;

  function bytes(n) {
    if (!n) return "0 B";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return n.toFixed(i ? 1 : 0) + " " + units[i];
  }
  function set(field, text) {
    const el = current.querySelector('[data-m-field="' + field + '"]');
    if (el) el.textContent = text;
  }
  function progress(sent, remaining, total) {
    return interpolate(gettext("%(sent)s sent, %(remaining)s of %(total)s left"), { sent: bytes(sent), remaining: bytes(remaining), total: bytes(total) }, true);
  }
  function syncForm() {
    if (form) form.hidden = migrating || phase !== "Running";
    if (idle) idle.hidden = migrating || phase === "Running";
  }

  function disk(s) {
    if (s.diskTotal) return progress(s.diskProcessed, s.diskRemaining, s.diskTotal);
    // Local volumes are copied before memory; disks on storage both hosts see are not.
    if (copiedGib) return interpolate(gettext("%(copied)s GiB of local volumes, copied with the guest"), { copied: copiedGib }, true);
    return diskGib ? interpolate(gettext("%(disk_gib)s GiB on shared storage — not copied"), { disk_gib: diskGib }, true) : gettext("none");
  }

  function draw(uid, s) {
    current.hidden = false;
    current.dataset.uid = uid;
    if (cancel) cancel.action = cancel.dataset.base + uid + "/cancel/";
    set("phase", window.Isotope.phaseLabel(s.phase));
    set("reason", s.reason || "");
    const bar = current.querySelector('[data-m-field="bar"]');
    bar.style.width = s.percent + "%";
    bar.textContent = s.percent + "%";
    bar.closest("[role=progressbar]").setAttribute("aria-valuenow", s.percent);
    set("memory", s.memoryTotal ? progress(s.memoryProcessed, s.memoryRemaining, s.memoryTotal) : "—");
    set("disk", disk(s));
    set("speed", s.transferRate ? bytes(s.transferRate) + "/s" : "—");
    set("dirty", s.dirtyRate ? bytes(s.dirtyRate) + "/s" : "—");
    set("iteration", s.iteration || "—");
    set("eta", s.etaSeconds != null ? window.Isotope.time.duration(s.etaSeconds) : "—");
  }

  function tell(level, text) {
    if (!note) return;
    note.textContent = text;
    note.classList.toggle("text-danger", level === "error");
    note.classList.toggle("text-body-secondary", level !== "error");
    note.hidden = !text;
  }

  // The server's page after a migration ended: its history rows, the VM's host and
  // whether a migration is still under way replace what this page shows. A failed fetch
  // is tried again a few times, then the panel says the page may be out of date.
  function refresh() {
    clearTimeout(retryTimer);
    load(++refreshes, 0);
  }

  function load(run, tries) {
    fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        if (run === refreshes) swap(html);
      }, function () {
        if (run !== refreshes) return;
        if (tries < RETRY_MS.length) {
          retryTimer = setTimeout(function () { load(run, tries + 1); }, RETRY_MS[tries]);
        } else {
          tell("error", gettext("This page may be out of date: the migration history and the VM's host could not be loaded. Reload the page."));
        }
      });
  }

  function swap(html) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    const rows = doc.querySelector('[data-testid="migration-history"] tbody');
    const mine = panel.querySelector('[data-testid="migration-history"] tbody');
    if (rows && mine) mine.replaceChildren.apply(mine, Array.from(rows.childNodes).map(function (n) { return document.importNode(n, true); }));
    const host = doc.querySelector('[data-testid="vm-host"]');
    document.querySelectorAll('[data-testid="vm-host"]').forEach(function (el) { if (host) el.textContent = host.textContent; });
    const fresh = doc.querySelector("[data-migration-current]");
    if (fresh && fresh.hidden && !migrating) current.hidden = true;
  }

  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const button = form.querySelector("button[type=submit]");
      if (button) button.disabled = true;
      fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then(function (response) {
          return response.json().catch(function () { return { level: "error", message: gettext("The request failed; reload the page and try again.") }; });
        })
        .then(function (body) {
          const seen = live.get(body.migration);
          // Ended before its reply came: the panel shows that end already, and the form.
          if (body.level !== "error" && seen === false) return;
          tell(body.level, body.message || "");
          if (body.level !== "error" && seen === undefined) {
            migrating = true;
            syncForm();
          }
          // The button is gone while a migration runs: the keyboard stays in the panel.
          if (note && (form.hidden || document.activeElement === document.body)) note.focus();
        })
        .catch(function () { tell("error", gettext("The request failed; reload the page and try again.")); })
        .finally(function () {
          if (!button) return;
          button.disabled = false;
          // Disabled while the request was out, it lost the keyboard: it gets it back.
          if (!form.hidden && document.activeElement === document.body) button.focus();
        });
    });
  }

  document.addEventListener("isotope:resource", function (event) {
    const data = event.detail && event.detail.data;
    if (!data || !data.state) return;
    if (data.kind === "vm" && data.name === vmName && data.state.phase) {
      phase = data.state.phase;
      panel.dataset.vmPhase = phase;
      syncForm();
      return;
    }
    if (data.kind !== "migration" || data.state.vm !== vmName) return;
    const s = data.state;
    draw(data.name, s);
    migrating = !!s.active;
    live.set(data.name, migrating);
    syncForm();
    if (!s.active && !event.detail.resync) {
      current.dataset.finished = s.phase;
      tell("", "");
      refresh();
    }
  });
})();
