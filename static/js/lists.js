// List pages (VMs, workloads): the header box ticks or unticks every row's box of the
// bulk form it names (data-bulk-all="<form id>").
document.addEventListener("change", function (event) {
  if (!event.target.matches("[data-bulk-all]")) return;
  const form = event.target.dataset.bulkAll;
  document.querySelectorAll('input[name="obj"][form="' + CSS.escape(form) + '"]').forEach(function (box) {
    box.checked = event.target.checked;
  });
});
