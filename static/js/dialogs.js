// Every page's dialogs show at once (no fade: a Cancel clicked as one opened was lost in
// Bootstrap's animation). So the second click of a double click that opened a dialog
// lands in it: on the dim backdrop it closed the dialog again (a flash, nothing done);
// on a button it pressed it (a row's Delete under the dialog's Confirm). A click that is
// the second or later of a quick series (event.detail > 1) within DOUBLE_MS of a dialog
// opening is dropped before Bootstrap or the page sees it. Keyboard presses (detail 0)
// and deliberate clicks (detail 1) act as usual.
(function () {
  "use strict";

  const DOUBLE_MS = 500;
  const opened = new WeakMap(); // dialog element → when it last opened
  document.addEventListener("show.bs.modal", (event) => {
    opened.set(event.target, performance.now());
  });
  document.addEventListener(
    "click",
    (event) => {
      if (event.detail < 2 || !(event.target instanceof Element)) return;
      const dialog = event.target.closest(".modal");
      if (!dialog || !opened.has(dialog) || performance.now() - opened.get(dialog) > DOUBLE_MS) return;
      event.preventDefault();
      event.stopImmediatePropagation();
    },
    true,
  );
})();
