// VM pages: confirm destructive actions in a modal (with "Don't ask again" where the
// user may turn the question off); show the custom size fields only when
// "Custom size" is chosen; apply the parts of live VM states that live.js leaves to the
// page (buttons by role, message visibility, desired state, deletion). Without JavaScript
// the server asks for confirmation and every size field stays visible.
(function () {
  "use strict";

  const modalEl = document.getElementById("vm-confirm");
  if (modalEl && window.bootstrap) {
    const modal = new bootstrap.Modal(modalEl);
    const skip = modalEl.querySelector("[data-confirm-skip]");
    const skipBox = skip.querySelector("input");
    let pending = null;
    let pendingButton = null;
    document.addEventListener("submit", (event) => {
      const form = event.target;
      if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
      if (form.querySelector("input[name=confirm]")) return; // confirmed already
      event.preventDefault();
      pending = form;
      pendingButton = event.submitter;
      modalEl.querySelector("[data-confirm-title]").textContent =
        (form.dataset.confirmLabel || "Confirm") + "?";
      modalEl.querySelector("[data-confirm-text]").textContent = form.dataset.confirm;
      modalEl.querySelector("[data-confirm-ok]").textContent = form.dataset.confirmLabel || gettext("Confirm");
      skip.hidden = form.dataset.confirmSkippable === undefined;
      skipBox.checked = false;
      modal.show();
    });
    modalEl.querySelector("[data-confirm-ok]").addEventListener("click", () => {
      if (!pending) return;
      const hidden = (name, value) => {
        const input = document.createElement("input");
        input.type = "hidden";
        input.name = name;
        input.value = value;
        input.dataset.confirmAnswer = "";
        pending.appendChild(input);
      };
      hidden("confirm", "yes");
      // "Don't ask again": the server records it for this user (the page that comes
      // back renders this action's buttons without data-confirm).
      if (!skip.hidden && skipBox.checked) hidden("dont_ask_again", "1");
      modal.hide();
      // A submit like the button's own (not form.submit(), which fires no submit
      // event): forms.js counts it, so a second click on the button while the request
      // is on its way sends nothing (the form holds the answer: it would not ask).
      const form = pending;
      const button = pendingButton;
      pending = pendingButton = null;
      if (button && button.form === form && button.isConnected) form.requestSubmit(button);
      else form.requestSubmit();
    });
    // A page the browser brings back (Back) asks again: the answers given are dropped.
    window.addEventListener("pageshow", (event) => {
      if (!event.persisted) return;
      document.querySelectorAll("input[data-confirm-answer]").forEach((input) => input.remove());
    });
  }

  // live.js patches phase and message text; the VM state carries the actions per role
  // (compute.services.vms.vm_state), so buttons are shown or hidden here for our role.
  const DESIRED = { running: gettext("Running"), stopped: gettext("Stopped"), paused: gettext("Paused"), deleted: gettext("Deleted") };
  document.addEventListener("isotope:resource", (event) => {
    const data = event.detail && event.detail.data;
    if (!data || data.kind !== "vm") return;
    const sel = '[data-live-kind="vm"][data-live-name="' + CSS.escape(data.name) + '"]';
    document.querySelectorAll(sel).forEach((root) => {
      if (data.deleted) {
        markDeleted(root);
        return;
      }
      const state = data.state || {};
      const scope = root.closest("[data-live-role]") || root;
      const byRole = state.actionsByRole || {};
      const actions = byRole[scope.dataset.liveRole] || [];
      root.querySelectorAll("[data-live-action]").forEach((el) => {
        el.hidden = actions.indexOf(el.dataset.liveAction) === -1;
      });
      const message = state.message || "";
      root.querySelectorAll("[data-live-hide-empty]").forEach((el) => {
        el.hidden = !message;
        el.title = message;
      });
      root.querySelectorAll('[data-live-show-with="message"]').forEach((el) => { el.hidden = !message; });
      if (state.desiredState) {
        root.querySelectorAll('[data-live-field="desiredState"]').forEach((el) => {
          el.textContent = DESIRED[state.desiredState] || state.desiredState;
        });
      }
      if (state.resourceVersion) {
        root.querySelectorAll('[data-live-field="resourceVersion"]').forEach((el) => {
          el.textContent = state.resourceVersion;
        });
      }
    });
  });

  function markDeleted(root) {
    root.dataset.liveDeleted = "1";
    if (root.dataset.testid === "vm-detail") {
      document.querySelectorAll("[data-live-show-when-deleted]").forEach((el) => { el.hidden = false; });
    }
  }

  // A resync snapshot lists the resources that exist; a VM on the page missing from it
  // may have been deleted while we were not listening: ask the API to be sure.
  document.addEventListener("isotope:snapshot", (event) => {
    const frame = event.detail || {};
    const tenant = document.body.dataset.liveTenant;
    if (!tenant || frame.stream !== "tenant." + tenant) return;
    const known = new Set(
      ((frame.data && frame.data.resources) || []).filter((r) => r.kind === "vm").map((r) => r.name)
    );
    document.querySelectorAll('[data-live-kind="vm"][data-live-name]').forEach((root) => {
      const name = root.dataset.liveName;
      if (known.has(name) || root.dataset.liveDeleted) return;
      const url = "/api/v1/tenants/" + encodeURIComponent(tenant) + "/virtualmachines/" +
        encodeURIComponent(name) + "/";
      window.Isotope.live.check(url, () => markDeleted(root));
    });
  });

  const choices = document.querySelector("[data-size-choices]");
  const custom = document.querySelector("[data-custom-size]");
  if (choices && custom) {
    const sync = () => {
      const checked = choices.querySelector("input[type=radio]:checked");
      custom.hidden = !!checked && checked.value !== "custom";
    };
    choices.addEventListener("change", sync);
    sync();
  }
})();
