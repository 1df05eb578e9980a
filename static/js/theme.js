// The "auto" theme (templates/base.html): the system's colour scheme, taken before the
// first paint (this file loads in <head>, before any stylesheet, and is not deferred) and
// followed when it changes. "light" and "dark" are set by the server and left alone.
(function () {
  "use strict";

  const root = document.documentElement;
  const query = window.matchMedia("(prefers-color-scheme: dark)");
  function apply() {
    if (root.dataset.isoTheme === "auto") root.dataset.bsTheme = query.matches ? "dark" : "light";
  }
  apply();
  query.addEventListener("change", apply);
})();
