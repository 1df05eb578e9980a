// Accessible names the Django admin's widgets leave out (axe-core, WCAG 4.1.2):
// a tabular inline's fields are labelled only by their column header, select2 boxes and
// filter_horizontal's search icons carry no usable name. Runs whenever the admin adds
// widgets or inline rows.
(function () {
  "use strict";

  function columnNames(table) {
    return Array.from(table.querySelectorAll("thead th")).map((th) => th.textContent.trim());
  }

  function nameInlineFields(root) {
    root.querySelectorAll(".inline-related.tabular table").forEach((table) => {
      const names = columnNames(table);
      table.querySelectorAll("tbody tr").forEach((tr) => {
        Array.from(tr.children).forEach((td, index) => {
          // The first header spans the hidden "original" cell; fields line up after it.
          const name = names[index - 1] || names[index];
          if (!name) return;
          td.querySelectorAll("input:not([type=hidden]), select, textarea").forEach((el) => {
            if (!el.labels?.length && !el.getAttribute("aria-label")) el.setAttribute("aria-label", name);
          });
        });
      });
    });
    root.querySelectorAll("select.admin-autocomplete").forEach((select) => {
      const name = select.getAttribute("aria-label") || select.labels?.[0]?.textContent.trim();
      const box = select.nextElementSibling;
      if (!name || !box) return;
      // select2 labels its box by the rendered choice, which is empty until one is made.
      box.querySelectorAll(".select2-selection, .select2-selection__rendered").forEach((el) => {
        el.removeAttribute("aria-labelledby");
        el.setAttribute("aria-label", name);
      });
    });
    // A split date/time field's label points at no input (Django's MultiWidget has no
    // single id for it): name each part after the field's label.
    root.querySelectorAll("p.datetime input[id$='_0'], p.datetime input[id$='_1']").forEach((el) => {
      if (el.labels?.length || el.getAttribute("aria-label")) return;
      const row = el.closest(".form-row, .fieldBox, td");
      const label = row?.querySelector("label")?.textContent.replace(/:\s*$/, "").trim();
      if (!label) return;
      el.setAttribute("aria-label", `${label} (${el.id.endsWith("_0") ? "date" : "time"})`);
    });
    // A span may carry aria-label only with a role: the icon stands for "search".
    root.querySelectorAll("span.help-tooltip[aria-label]:not([role])").forEach((el) => {
      el.setAttribute("role", "img");
    });
  }

  // The admin builds its widgets at different moments (jQuery's ready runs its callbacks
  // asynchronously, inline rows come later): name whatever appears, once per batch.
  let queued = false;
  function soon() {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; nameInlineFields(document); });
  }
  new MutationObserver(soon).observe(document.documentElement, { childList: true, subtree: true });
  window.addEventListener("load", soon);
})();
