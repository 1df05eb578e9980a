// List pages (VMs, workloads): the header box ticks or unticks every row's box of the
// bulk form it names (data-bulk-all="<form id>").
document.addEventListener("change", function (event) {
  if (!event.target.matches("[data-bulk-all]")) return;
  const form = event.target.dataset.bulkAll;
  document.querySelectorAll('input[name="obj"][form="' + CSS.escape(form) + '"]').forEach(function (box) {
    box.checked = event.target.checked;
  });
});

// Paged lists (templates/compute/_pager.html, data-pager-range="<prefix>"): "1–25 of 30"
// follows the rows that live updates add to or remove from the page's table
// (data-testid="<prefix>-table"), e.g. backups.js's row for a new backup on the first
// page, or its removal of a deleted one. A list's rows come and go live only as its
// objects are created or deleted, so the total moves by as many rows as the page gained
// or lost since it was rendered. The range starts where the server put it and ends at
// the last row actually shown: page 1 of 25 rows that gained a live row reads "1–26 of
// 31" (page 2, as rendered, still starts at 26: its first row is now on both pages until
// a reload); a page whose rows all went reads "0–0 of N", as Django words an empty page.
// A page counts only the rows it shows: page 2 does not add the new backups that go to
// page 1, nor drop the deleted rows of other pages, so its total can lag until a reload.
// Whether the pager is shown at all is the server's call (more rows than the smallest
// page) and is not revisited here.
(function () {
  "use strict";

  function follow(range) {
    const prefix = range.dataset.pagerRange;
    const table = document.querySelector('[data-testid="' + CSS.escape(prefix + "-table") + '"]');
    const body = table && table.tBodies[0];
    if (!body) return;
    const start = Number(range.dataset.start);
    const count = Number(range.dataset.count);
    const rendered = count ? Number(range.dataset.end) - start + 1 : 0;
    const sync = function () {
      const shown = body.querySelectorAll(":scope > tr[data-live-kind]").length;
      const total = Math.max(shown, count + shown - rendered);
      range.textContent = interpolate(
        gettext("%(start_index)s–%(end_index)s of %(count)s"),
        { start_index: shown ? start : 0, end_index: shown ? start + shown - 1 : 0, count: total },
        true
      );
    };
    new MutationObserver(sync).observe(body, { childList: true });
  }

  document.querySelectorAll("[data-pager-range]").forEach(follow);
})();
