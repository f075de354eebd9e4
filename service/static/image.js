// Image page: keyboard navigation and loading more neighbours (up to 100).
(function () {
  "use strict";

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    var target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" ||
                   target.isContentEditable)) return;
    var link = null;
    if (event.key === "ArrowLeft") link = document.getElementById("previous-link");
    else if (event.key === "ArrowRight") link = document.getElementById("next-link");
    else if (event.key === "r") link = document.getElementById("random-link");
    if (link) {
      event.preventDefault();
      window.location.href = link.href;
    }
  });

  var more = document.getElementById("more");
  var grid = document.getElementById("neighbour-grid");
  if (!more || !grid) return;

  function card(entry) {
    var item = document.createElement("li");
    item.className = "neighbour";
    var link = document.createElement("a");
    link.href = entry.links.page;
    var img = document.createElement("img");
    img.src = entry.links.thumbnail;
    img.alt = entry.file_name;
    img.loading = "lazy";
    link.appendChild(img);
    [["rank", String(entry.rank)], ["distance", entry.distance.toPrecision(4)],
     ["name", entry.file_name]].forEach(function (pair) {
      var span = document.createElement("span");
      span.className = pair[0];
      span.textContent = pair[1];
      link.appendChild(span);
    });
    item.appendChild(link);
    return item;
  }

  more.addEventListener("click", function () {
    var offset = Number(more.dataset.offset);
    var url = more.dataset.url + (more.dataset.url.indexOf("?") < 0 ? "?" : "&") +
      "limit=" + more.dataset.limit + "&offset=" + offset;
    more.disabled = true;
    fetch(url, {headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (page) {
        page.neighbours.forEach(function (entry) { grid.appendChild(card(entry)); });
        more.dataset.offset = String(offset + page.neighbours.length);
        if (page.next) more.disabled = false;
        else more.remove();
      })
      .catch(function (error) {
        more.disabled = false;
        more.textContent = "Show more (failed: " + error.message + "; try again)";
      });
  });
})();
