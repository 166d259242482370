// Keyplane console: progressive enhancement only; every page works without it.
(function () {
  "use strict";

  // The page that shows a new key is never reachable again by reload or history.
  var created = document.querySelector("[data-replace-url]");
  if (created && window.history && window.history.replaceState) {
    window.history.replaceState(null, "", created.getAttribute("data-replace-url"));
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) { return; }
    var field = document.getElementById(button.getAttribute("data-copy-target"));
    var status = document.querySelector(".copy-status");
    var done = function (message) { if (status) { status.textContent = message; } };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(
        function () { done("Copied to the clipboard."); },
        function () { field.select(); done("Press Ctrl+C to copy."); }
      );
    } else {
      field.select();
      try { document.execCommand("copy"); done("Copied to the clipboard."); }
      catch (error) { done("Press Ctrl+C to copy."); }
    }
  });

  // One open three-dot menu at a time; Escape closes it and returns focus.
  document.addEventListener("toggle", function (event) {
    var opened = event.target;
    if (!opened.classList || !opened.classList.contains("menu") || !opened.open) { return; }
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (menu !== opened) { menu.open = false; }
    });
  }, true);
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") { return; }
    var open = document.querySelector("details.menu[open]");
    if (open) { open.open = false; open.querySelector("summary").focus(); }
  });
})();
