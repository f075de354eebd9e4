// Search by image: choose, take, drop or paste a picture and it is searched at once;
// changing the similarity searches the same picture again. A large photo is scaled
// down here before it is sent (the model sees 299 × 299 pixels). Without JavaScript
// the form posts as it is.
(function () {
  "use strict";

  var MAX_SIDE = 1600;  // pixels of the longer side sent; more only costs time
  var form = document.getElementById("upload-form");
  var zone = document.getElementById("drop-zone");
  var select = document.getElementById("space-select");
  var button = document.getElementById("search-button");
  var status = document.getElementById("search-status");
  if (!form || !zone || !window.fetch || !window.FormData) return;
  var inputs = form.querySelectorAll("input[type=file]");
  var current = null;  // the picture last chosen
  var running = false;

  function setBusy(busy) {
    running = busy;
    button.disabled = busy;
    button.textContent = busy ? "Searching…" : "Search";
    form.setAttribute("aria-busy", busy ? "true" : "false");
    if (busy) status.textContent = "Searching…";
  }

  function preview(file) {
    var section = document.querySelector(".search-result");
    var image = document.getElementById("query-image");
    if (!section || !image) return;
    image.src = URL.createObjectURL(file);
    document.getElementById("query-caption").textContent = "Your image: " + (file.name || "pasted");
    section.hidden = false;
  }

  // Resolve to a JPEG of at most MAX_SIDE pixels a side, or the file itself where it is
  // small enough or the browser cannot draw it.
  function scaled(file) {
    if (!window.createImageBitmap) return Promise.resolve(file);
    return createImageBitmap(file, {imageOrientation: "from-image"}).then(function (bitmap) {
      var scale = MAX_SIDE / Math.max(bitmap.width, bitmap.height);
      if (scale >= 1) return file;
      var canvas = document.createElement("canvas");
      canvas.width = Math.round(bitmap.width * scale);
      canvas.height = Math.round(bitmap.height * scale);
      canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      return new Promise(function (resolve) {
        canvas.toBlob(function (blob) { resolve(blob || file); }, "image/jpeg", 0.92);
      });
    }, function () { return file; });
  }

  function run() {
    if (!current || running) return;
    setBusy(true);
    scaled(current).then(function (blob) {
      var data = new FormData();
      data.append("space", select.value);
      data.append("image", blob, blob === current && current.name ? current.name : "photo.jpg");
      return fetch(form.action, {method: "POST", body: data,
                                 headers: {"Accept": "text/html"}});
    }).then(function (response) {
      return response.text();
    }).then(function (html) {
      var page = new DOMParser().parseFromString(html, "text/html");
      var answer = page.getElementById("search-answer");
      if (!answer) throw new Error("unexpected answer");
      document.getElementById("search-answer").replaceWith(answer);
      // On a phone the form fills the screen: bring the results into view.
      if (answer.getBoundingClientRect().top > window.innerHeight / 2) {
        answer.scrollIntoView({block: "start"});
      }
      status.textContent = answer.querySelector("#search-error") ? "" : "Done.";
    }).catch(function (error) {
      status.textContent = "The search failed (" + error.message + "); try again.";
    }).then(function () { setBusy(false); });
  }

  function choose(file) {
    if (!file) return;
    current = file;
    preview(file);
    run();
  }

  inputs.forEach(function (input) {
    input.addEventListener("change", function () {
      if (input.files.length) choose(input.files[0]);
    });
  });
  select.addEventListener("change", run);
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (current) run();
    else status.textContent = "Choose or take a photo first.";
  });
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function () { zone.classList.remove("dragging"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    var files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) choose(files[0]);
  });
  document.addEventListener("paste", function (event) {
    var items = (event.clipboardData && event.clipboardData.items) || [];
    for (var i = 0; i < items.length; i++) {
      if (items[i].kind === "file" && items[i].type.indexOf("image/") === 0) {
        event.preventDefault();
        choose(items[i].getAsFile());
        return;
      }
    }
  });
})();
