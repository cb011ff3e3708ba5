// babelmerge site: column sorting and row filters. The tables are complete without this script.
(function () {
  "use strict";
  function cellValue(row, i) {
    var cell = row.cells[i];
    var text = cell ? cell.textContent.trim() : "";
    var num = parseFloat(text.replace(/[^0-9eE+\-.]/g, " ").trim().split(" ")[0]);
    return { text: text, num: isNaN(num) || text === "–" ? null : num };
  }
  function sortBy(table, th) {
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.getAttribute("data-sort") === "num";
    var dir = th.getAttribute("aria-sort") === "descending" ? "ascending" : "descending";
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, idx), y = cellValue(b, idx), c;
      if (numeric) {
        if (x.num === null && y.num === null) { c = 0; }
        else if (x.num === null) { return 1; } else if (y.num === null) { return -1; }
        else { c = x.num - y.num; }
      } else { c = x.text.localeCompare(y.text); }
      return dir === "ascending" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable thead th").forEach(function (th) {
    th.tabIndex = 0;
    th.classList.add("clickable");
    var table = th.closest("table");
    th.addEventListener("click", function () { sortBy(table, th); });
    th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th); } });
  });
  var form = document.getElementById("filters");
  if (form) {
    form.hidden = false;
    var selects = form.querySelectorAll("select");
    var count = form.querySelector(".count");
    var apply = function () {
      var shown = 0, total = 0;
      document.querySelectorAll("table.board tbody tr").forEach(function (tr) {
        var ok = true;
        selects.forEach(function (s) {
          var want = s.value, key = s.getAttribute("data-filter");
          if (!want) { return; }
          var have = tr.getAttribute("data-" + key) || "";
          if (key === "constituents" ? have.split(" ").indexOf(want) < 0 : have !== want) { ok = false; }
        });
        tr.hidden = !ok;
        if (tr.closest("section").id === "overall") { total += 1; if (ok) { shown += 1; } }
      });
      count.textContent = shown + " of " + total + " models shown";
    };
    selects.forEach(function (s) { s.addEventListener("change", apply); });
    apply();
  }
})();
