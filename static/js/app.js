// Behaviour that used to sit in inline handlers (onsubmit/onclick), moved here so that the
// Content-Security-Policy can refuse every inline script (security/headers.py).
(function () {
  "use strict";

  // <form data-confirm="…">: ask before submitting.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form.getAttribute && form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // Placeholder links (href="#", where Flask-Admin had javascript:void(0)): menus and filters
  // never navigate. Capture phase: Flask-Admin's dropdown hack stops the click's propagation.
  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("a[href='#']")) {
      event.preventDefault();
    }
  }, true);

  document.addEventListener("click", function (event) {
    if (!event.target.closest) {
      return;
    }
    // <button data-confirm="…"> (a button of a form that asks per button).
    var button = event.target.closest("button[data-confirm], a[data-confirm], input[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) {
      event.preventDefault();
      event.stopImmediatePropagation();
      return;
    }
    // Flask-Admin's "with selected" menu (templates/admin/actions.html).
    var action = event.target.closest("[data-model-action]");
    if (action) {
      event.preventDefault();
      if (window.modelActions) {
        window.modelActions.execute(action.getAttribute("data-model-action"));
      }
    }
  });
})();
