/* The copy buttons beside code to paste (the sign-up box's snippet). Hidden until this
   script runs: without it, the text is selectable in its box, and a button would do nothing. */
(function () {
  "use strict";
  function copy(button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    var said = document.querySelector("[data-copied='" + source.id + "']");
    function done(ok) { if (said) { said.textContent = ok ? "Copied." : "Select the text and copy it."; } }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(source.value).then(function () { done(true); },
                                                        function () { done(false); });
    } else {
      source.select();
      done(document.execCommand && document.execCommand("copy"));
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    var buttons = document.querySelectorAll("button[data-copy]");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].hidden = false;
      buttons[i].addEventListener("click", function (event) { copy(event.currentTarget); });
    }
  });
})();
