// The staff migrations page (templates/compute/migrations_staff.html). Staff watch every
// tenant: poll the state once a second while the tab is seen (one request at a time);
// reload when the set changes, unless a form of this page (Drain, Cancel) is on its way:
// the reload would cut its request off, nor while a dialog is open (Drain's question).
(function () {
  "use strict";

  const root = document.querySelector("[data-state-url]");
  if (!root) return;
  const shown = Array.from(root.querySelectorAll("[data-testid=active-migrations] tr[data-uid]")).map(r => r.dataset.uid).join(",");
  let polling = false;
  const busy = () => document.querySelector("form[data-iso-sent], .modal.show") !== null;
  setInterval(async function () {
    if (document.hidden || polling || busy()) return;
    polling = true;
    let data;
    try {
      const r = await fetch(root.dataset.stateUrl, { credentials: "same-origin" });
      if (!r.ok) return;
      data = await r.json();
    } catch (e) {
      return; // offline for a moment: the next poll tries again
    } finally {
      polling = false;
    }
    if (busy()) return;
    if (data.active.map(m => m.uid).join(",") !== shown) { location.reload(); return; }
    data.active.forEach(function (m) {
      const row = root.querySelector('tr[data-uid="' + m.uid + '"]');
      if (!row) return;
      row.querySelector("[data-f=phase]").textContent = m.phase;
      const bar = row.querySelector("[data-f=bar]"); bar.style.width = m.percent + "%"; bar.textContent = m.percent + "%";
      row.querySelector("[data-f=speed]").textContent = m.transferRate ? (m.transferRate / 1048576).toFixed(1) + " MiB/s" : "—";
      row.querySelector("[data-f=eta]").textContent = m.etaSeconds != null ? m.etaSeconds + " s" : "—";
      row.querySelector("[data-f=reason]").textContent = m.reason;
    });
  }, 1000);
})();
