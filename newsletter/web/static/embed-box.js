/* The sign-up box's own script (its policy runs no inline script). It fills in the
   reader's time zone, and tells the page that frames the box how tall the box is, so that
   the site's /embed.js can fit the frame to it. It posts that number and nothing else. */
(function () {
  "use strict";
  var zone = document.querySelector("input[name=timezone]");
  if (zone && window.Intl && Intl.DateTimeFormat) {
    zone.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  }
  if (window.parent === window) { return; }  /* opened on its own, not framed */

  var box = document.querySelector(".embed-box") || document.body;
  var told = 0;
  function tell(always) {
    var height = Math.ceil(box.getBoundingClientRect().height);
    if (height > 0 && (always || height !== told)) {
      told = height;
      /* Any origin may read it: a height is no secret, and we cannot know the site's. */
      window.parent.postMessage({ newsletterEmbedHeight: height }, "*");
    }
  }
  if (window.ResizeObserver) {
    new ResizeObserver(function () { tell(false); }).observe(box);
  }
  window.addEventListener("load", function () { tell(false); });
  /* The site's script loaded after this box, and asks. */
  window.addEventListener("message", function (event) {
    if (event.source === window.parent && event.data === "newsletterEmbedHeight?") { tell(true); }
  });
  tell(false);
})();
