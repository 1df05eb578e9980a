// Every page: a form that posts is sent once. A second click on its button while the
// first request is on its way (a slow server, a double click) would send the request
// again: the VM created by the first would make the second fail ("name taken") and
// that error would be the page the user sees. Later submits of a form already sent are
// dropped, and its button looks busy. Forms that send themselves (their own submit
// handler prevents the browser's) and forms that get (search, filters) are left alone.
// A page the browser brings back from its history (Back) takes submits again.
(function () {
  "use strict";

  // On window: after every listener on the form or the document (vms.js's confirm
  // dialog, images.js's upload), so a submit one of them took over is not counted.
  window.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || event.defaultPrevented) return;
    const method = (event.submitter && event.submitter.getAttribute("formmethod")) || form.method;
    if (method.toLowerCase() !== "post") return;
    if (form.dataset.isoSent) {
      event.preventDefault();
      return;
    }
    form.dataset.isoSent = "1";
    form.setAttribute("aria-busy", "true");
    const button = event.submitter;
    // After this event: a button disabled now would be left out of what is sent.
    if (button) setTimeout(() => {
      button.dataset.isoBusy = "1";
      button.classList.add("disabled");
      button.setAttribute("aria-disabled", "true");
    });
  });

  // A choice that is the whole form (data-submit-on-change: the workload log's pod):
  // picking one sends the form.
  document.addEventListener("change", (event) => {
    const field = event.target;
    if (!(field instanceof HTMLSelectElement) || !field.form || !field.hasAttribute("data-submit-on-change")) return;
    field.form.requestSubmit();
  });

  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    document.querySelectorAll("form[data-iso-sent]").forEach((form) => {
      delete form.dataset.isoSent;
      form.removeAttribute("aria-busy");
    });
    document.querySelectorAll("[data-iso-busy]").forEach((button) => {
      delete button.dataset.isoBusy;
      button.classList.remove("disabled");
      button.removeAttribute("aria-disabled");
    });
  });
})();
