// Image page: "Show more" shows the next neighbours (all are on the page); choosing a
// folder filters at once.
(function () {
  "use strict";

  var more = document.getElementById("more");
  var grid = document.getElementById("neighbour-grid");
  if (more && grid) {
    more.addEventListener("click", function (event) {
      event.preventDefault();
      var hidden = grid.querySelectorAll("li[hidden]");
      var step = Number(more.dataset.step);
      for (var i = 0; i < hidden.length && i < step; i++) hidden[i].hidden = false;
      if (hidden.length <= step) more.remove();
    });
  }
  var filter = document.getElementById("neighbour-filter");
  if (filter) {
    filter.querySelectorAll("select, input[type=checkbox]").forEach(function (field) {
      field.addEventListener("change", function () { filter.submit(); });
    });
  }
})();
