/* The newsletter sign-up box: fits each <iframe> of it on this page to the box's height.
   No dependencies. It reads only messages from the newsletter's own origin, and takes
   nothing from them but a number of pixels. */
(function () {
  "use strict";
  var ORIGIN = {{ origin|tojson }};
  if (window.newsletterEmbedSizing) { return; }  /* the snippet twice on one page */
  window.newsletterEmbedSizing = true;

  function ours(frame) {
    return (frame.getAttribute("src") || "").indexOf(ORIGIN + "/embed/") === 0;
  }

  window.addEventListener("message", function (event) {
    if (event.origin !== ORIGIN || !event.data) { return; }
    var height = event.data.newsletterEmbedHeight;
    if (typeof height !== "number" || !(height > 0 && height < 10000)) { return; }
    var frames = document.getElementsByTagName("iframe");
    for (var i = 0; i < frames.length; i++) {
      if (frames[i].contentWindow === event.source && ours(frames[i])) {
        frames[i].style.height = Math.ceil(height) + "px";
        return;
      }
    }
  });

  /* A box that loaded before this script told nobody its height: ask each one again. */
  function ask() {
    var frames = document.getElementsByTagName("iframe");
    for (var i = 0; i < frames.length; i++) {
      if (ours(frames[i]) && frames[i].contentWindow) {
        frames[i].contentWindow.postMessage("newsletterEmbedHeight?", ORIGIN);
      }
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ask);
  } else {
    ask();
  }
})();
