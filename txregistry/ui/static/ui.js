// The UI's only script (the Content-Security-Policy allows no other):
// filtering the rows of a table as one types, and copying pull lines.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("input[data-filter]").forEach(function (input) {
    var name = input.getAttribute("data-filter");
    input.addEventListener("input", function () {
      var wanted = input.value.toLowerCase();
      document.querySelectorAll("table[data-filtered='" + name + "'] tbody tr").forEach(function (row) {
        var text = (row.getAttribute("data-name") || "").toLowerCase();
        row.hidden = text.indexOf(wanted) === -1;
      });
    });
  });
  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", function () {
      var text = button.getAttribute("data-copy");
      navigator.clipboard.writeText(text).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 1500);
      });
    });
  });
});
