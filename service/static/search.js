// Search by image: drop or paste a picture, see it at once, and send the same form the
// page sends without JavaScript.
(function () {
  "use strict";

  var form = document.getElementById("upload-form");
  var input = document.getElementById("image-input");
  var zone = document.getElementById("drop-zone");
  if (!form || !input || !zone) return;

  function preview(file) {
    var image = document.getElementById("query-image");
    if (!image) return;
    image.src = URL.createObjectURL(file);
    document.getElementById("query-caption").textContent = "Your image: " + file.name;
    image.closest("section").hidden = false;
  }

  function send(file) {
    if (!file) return;
    // A DataTransfer is how a script may fill a file input; the form then posts as usual.
    var transfer = new DataTransfer();
    transfer.items.add(file);
    input.files = transfer.files;
    preview(file);
    form.submit();
  }

  input.addEventListener("change", function () {
    if (input.files.length) send(input.files[0]);
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
    if (files && files.length) send(files[0]);
  });
  document.addEventListener("paste", function (event) {
    var items = (event.clipboardData && event.clipboardData.items) || [];
    for (var i = 0; i < items.length; i++) {
      if (items[i].kind === "file" && items[i].type.indexOf("image/") === 0) {
        event.preventDefault();
        send(items[i].getAsFile());
        return;
      }
    }
  });
})();
