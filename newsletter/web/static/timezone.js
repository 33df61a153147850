// Fills the sign-up form's hidden "timezone" field with the browser's IANA time zone, so
// daily and weekly editions reach the reader at the send hour where they live. Without
// script (or with a zone we do not know) the server uses the site's time zone.
(function () {
  "use strict";
  var zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (e) {
    return;
  }
  var fields = document.querySelectorAll('input[type="hidden"][name="timezone"]');
  for (var i = 0; i < fields.length; i++) {
    if (!fields[i].value) fields[i].value = zone;
  }
})();
