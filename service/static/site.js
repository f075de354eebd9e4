// Every page: ← and → follow the page's previous and next links, r opens a random
// image; a thumbnail that cannot be shown becomes a note, never a broken picture.
(function () {
  "use strict";

  document.documentElement.classList.add("js");  // hides what only the form needs

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    var target = event.target;
    if (target && (/^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName) ||
                   target.isContentEditable)) return;
    var link = null;
    if (event.key === "ArrowLeft") link = document.querySelector("main a[rel=prev]");
    else if (event.key === "ArrowRight") link = document.querySelector("main a[rel=next]");
    else if (event.key === "r") link = document.getElementById("random-link");
    if (link) {
      event.preventDefault();
      window.location.href = link.href;
    }
  });

  function unavailable(image) {
    var note = document.createElement("span");
    note.className = "no-picture";
    note.setAttribute("role", "img");
    note.textContent = "No picture: the file cannot be shown";
    note.setAttribute("aria-label", note.textContent);
    image.replaceWith(note);
  }

  // A load error before this script ran shows as complete with no width.
  document.querySelectorAll("main img").forEach(function (image) {
    if (image.complete && image.naturalWidth === 0 && image.getAttribute("src")) {
      unavailable(image);
    } else {
      image.addEventListener("error", function () { unavailable(image); });
    }
  });
})();
