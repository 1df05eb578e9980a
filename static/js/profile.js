// The profile page (templates/portal/profile.html): a button with data-copy-from="<id>"
// copies that field's value (the new API token, shown once) to the clipboard.
(function () {
  "use strict";

  document.addEventListener("click", (event) => {
    const button = event.target instanceof Element && event.target.closest("[data-copy-from]");
    if (!button) return;
    const field = document.getElementById(button.dataset.copyFrom);
    if (field) navigator.clipboard.writeText(field.value);
  });
})();
