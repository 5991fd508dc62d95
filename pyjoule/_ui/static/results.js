// The results page: a plot the server refused shows the server's reason, as text.
(function () {
  "use strict";
  var img = document.getElementById("plot");
  if (!img) { return; }
  img.addEventListener("error", function () {
    fetch(img.src, { credentials: "same-origin" }).then(function (r) {
      return r.text();
    }).then(function (text) {
      var p = document.createElement("p");
      p.className = "error";
      p.textContent = "The plot could not be drawn: " + text;
      img.replaceWith(p);
    });
  });
})();
