// Keyboard shortcuts for every page (templates/portal/_shortcut_help.html lists them):
// "/" focuses the top bar's search, "?" opens the help dialog, "g" then a letter follows
// the sidebar link marked data-shortcut="<letter>". Keys typed into a field, a select,
// an editable element or the console's screen are left alone, as are keys with Ctrl,
// Alt or Meta (the browser's and the console's own shortcuts).
(function () {
  "use strict";

  const PENDING_MS = 1500;
  let pendingG = 0;

  function typing(target) {
    if (!(target instanceof Element)) return false;
    if (target.closest("input, textarea, select, [contenteditable=''], [contenteditable='true']")) return true;
    return !!target.closest("[data-console], .iso-console, canvas");
  }

  // A click on the console's screen that gave focus to nothing (a view-only console
  // takes no keyboard) still means "typing at the console": keys that follow are not
  // shortcuts until something else is clicked or focused.
  let atConsole = false;
  function inConsole(target) {
    return target instanceof Element && !!target.closest("[data-console]");
  }
  document.addEventListener("pointerdown", function (event) {
    atConsole = inConsole(event.target);
  }, true);
  document.addEventListener("focusin", function (event) {
    if (!inConsole(event.target)) atConsole = false;
  }, true);

  function openHelp() {
    const dialog = document.getElementById("shortcut-help");
    if (dialog && window.bootstrap) window.bootstrap.Modal.getOrCreateInstance(dialog).show();
  }

  document.addEventListener("keydown", function (event) {
    const search = document.getElementById("global-search");
    if (event.key === "Escape" && search && event.target === search) {
      search.blur();
      return;
    }
    if (event.defaultPrevented || event.ctrlKey || event.altKey || event.metaKey) return;
    // Escape closes the help dialog even when focus has not reached it yet.
    const help = document.getElementById("shortcut-help");
    if (event.key === "Escape" && help && help.classList.contains("show") && !help.contains(event.target) && window.bootstrap) {
      window.bootstrap.Modal.getOrCreateInstance(help).hide();
      return;
    }
    if (typing(event.target)) return;
    if (atConsole && document.activeElement === document.body) return;
    if (document.querySelector(".modal.show") && event.key !== "?") return;
    if (event.key === "/" && search) {
      event.preventDefault();
      search.focus();
      search.select();
    } else if (event.key === "?") {
      event.preventDefault();
      openHelp();
    } else if (event.key === "g") {
      pendingG = Date.now();
    } else if (pendingG && Date.now() - pendingG < PENDING_MS && /^[a-z]$/.test(event.key)) {
      pendingG = 0;
      const link = document.querySelector('a[data-shortcut="' + event.key + '"]');
      if (link) {
        event.preventDefault();
        window.location.assign(link.href);
      }
    } else {
      pendingG = 0;
    }
  });
})();
