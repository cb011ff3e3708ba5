// babelmerge site: a model's page (model.html?m=<slug>), drawn from its data file data/models/<shard>.js, which
// harness/site.py writes (_write_model_shards). Every value from a submission is set as text, never as markup.
(function () {
  "use strict";
  var root = document.getElementById("model");
  if (!root) { return; }
  var SVG = "http://www.w3.org/2000/svg";
  var PALETTE = ["#2456a6", "#c03030", "#2e8b57", "#b8860b", "#6a3d9a", "#1f7a8c", "#d95f02", "#555555", "#e7298a", "#66a61e"];
  var dead = (root.getAttribute("data-dead") || "").split(" ").filter(Boolean);
  var slug = new URLSearchParams(window.location.search).get("m") || "";

  // the data file of a slug: 32-bit FNV-1a of its UTF-8 bytes, modulo the number of files (site.shard_of)
  function shardOf(s, shards) {
    var bytes = new TextEncoder().encode(s), h = 0x811c9dc5;
    for (var i = 0; i < bytes.length; i++) { h = Math.imul(h ^ bytes[i], 0x01000193) >>> 0; }
    return h % shards;
  }
  window.babelShardOf = shardOf;  // for the browser test that checks it against site.shard_of

  // numbers in a data file are integers in units of 10^-5 (site.DATA_DIGITS), a very large one as [value]
  function num(x) { return x === null || x === undefined ? null : Array.isArray(x) ? x[0] : x / 1e5; }
  // a table's columns (name -> values) as rows of the named columns
  function rows(cols, names) {
    if (!cols) { return []; }
    return cols[names[0]].map(function (_, i) { return names.map(function (c) { return cols[c][i]; }); });
  }
  function fmt(v, digits) { return v === null || v === undefined || !isFinite(v) ? "–" : Number(v).toFixed(digits); }
  function pval(v) { return v === null || v === undefined || !isFinite(v) ? "–" : v < 0.001 ? "< 0.001" : v.toFixed(3); }
  function heat(v) {  // site.heat: the class of a relative gap in percent
    if (v === null || v === undefined || !isFinite(v)) { return "h-na"; }
    var bounds = [[40, 3], [15, 2], [5, 1]];
    for (var i = 0; i < bounds.length; i++) {
      if (Math.abs(v) >= bounds[i][0]) { return "h-" + (v < 0 ? "n" : "p") + bounds[i][1]; }
    }
    return "h-0";
  }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }
  function byId(id) { return document.getElementById(id); }
  function show(id) { byId(id).hidden = false; }
  // a table: the first cell of a row is its header; a cell is a value or [value, class]
  function table(caption, headers, rows) {
    var t = el("table", null, "scores"), head = el("tr"), body = el("tbody"), thead = el("thead");
    t.appendChild(el("caption", caption));
    headers.forEach(function (h) { var th = el("th", h); th.scope = "col"; head.appendChild(th); });
    thead.appendChild(head);
    t.appendChild(thead);
    rows.forEach(function (r) {
      var tr = el("tr"), th = el("th", r[0]);
      th.scope = "row";
      tr.appendChild(th);
      r.slice(1).forEach(function (c) { tr.appendChild(Array.isArray(c) ? el("td", c[0], c[1]) : el("td", c)); });
      body.appendChild(tr);
    });
    t.appendChild(body);
    return t;
  }
  function fact(dl, term, value) {
    dl.appendChild(el("dt", term));
    var dd = el("dd");
    (Array.isArray(value) ? value : [value]).forEach(function (v) { dd.appendChild(v instanceof Node ? v : document.createTextNode(String(v))); });
    dl.appendChild(dd);
    return dd;
  }
  function code(text) { return el("code", text); }
  function pairs(obj, between) {
    return Object.keys(obj || {}).map(function (k) { return k + (between === undefined ? " " : between) + obj[k]; }).join(", ");
  }

  // a line per series over layers 0, 1, 2, ... (harness/plots.lines)
  function lines(series, title, xlabel, ylabel) {
    var W = 460, H = 300, PAD = 46, names = Object.keys(series), n = 1, ys = [];
    names.forEach(function (k) { n = Math.max(n, series[k].length); series[k].forEach(function (v) { if (v !== null && isFinite(v)) { ys.push(v); } }); });
    var lo = ys.length ? Math.min.apply(null, ys) : 0, hi = ys.length ? Math.max.apply(null, ys) : 1;
    if (hi - lo < 1e-12) { lo -= 0.5; hi += 0.5; } else { var pad = 0.06 * (hi - lo); lo -= pad; hi += pad; }
    var xmax = Math.max(1, n - 1), legendW = Math.max.apply(null, names.map(function (k) { return k.length; }).concat([8])) * 7;
    var w = W + legendW, h = Math.max(H, PAD + 14 * (Math.min(names.length, 10) + 1));
    var sx = function (x) { return PAD + x / xmax * (W - 1.5 * PAD); };
    var sy = function (y) { return h - PAD - (y - lo) / (hi - lo) * (h - 1.5 * PAD); };
    var svg = document.createElementNS(SVG, "svg");
    var add = function (tag, attrs, text) {
      var e = document.createElementNS(SVG, tag);
      Object.keys(attrs).forEach(function (a) { e.setAttribute(a, attrs[a]); });
      if (text !== undefined) { e.textContent = text; }
      svg.appendChild(e);
      return e;
    };
    [["class", "plot"], ["role", "img"], ["aria-labelledby", "sim-t sim-d"], ["width", w], ["height", h],
     ["viewBox", "0 0 " + w + " " + h]].forEach(function (a) { svg.setAttribute(a[0], a[1]); });
    add("title", { id: "sim-t" }, title);
    add("desc", { id: "sim-d" }, names.length + " lines over " + n + " points.");
    for (var i = 0; i < 5; i++) {
      var xv = xmax * i / 4, yv = lo + (hi - lo) * i / 4;
      add("text", { "class": "tick", x: sx(xv).toFixed(1), y: h - PAD + 15, "text-anchor": "middle" }, String(+xv.toPrecision(3)));
      add("text", { "class": "tick", x: PAD - 5, y: (sy(yv) + 4).toFixed(1), "text-anchor": "end" }, String(+yv.toPrecision(3)));
      add("line", { "class": "grid", x1: PAD, y1: sy(yv).toFixed(1), x2: W - PAD / 2, y2: sy(yv).toFixed(1) });
    }
    add("text", { "class": "label", x: W / 2, y: h - 8, "text-anchor": "middle" }, xlabel);
    add("text", { "class": "label", x: 13, y: h / 2, transform: "rotate(-90 13 " + h / 2 + ")", "text-anchor": "middle" }, ylabel);
    names.forEach(function (k, j) {
      var pts = [];
      series[k].forEach(function (v, x) { if (v !== null && isFinite(v)) { pts.push(sx(x).toFixed(1) + "," + sy(v).toFixed(1)); } });
      var line = add("polyline", { "class": "series", stroke: PALETTE[j % PALETTE.length], points: pts.join(" ") });
      line.appendChild(document.createElementNS(SVG, "title")).textContent = k;
      if (j < 10) { add("text", { "class": "legend", x: W + 4, y: PAD / 2 + 14 * j + 8, fill: PALETTE[j % PALETTE.length] }, k); }
    });
    if (names.length > 10) { add("text", { "class": "legend", x: W + 4, y: PAD / 2 + 14 * 10 + 8 }, "and " + (names.length - 10) + " more"); }
    return svg;
  }

  function missing(text) {
    var p = byId("m-missing");
    p.textContent = text;
    p.hidden = false;
  }

  function render(d, sigs) {
    document.title = d.id + " · babelmerge " + root.getAttribute("data-suite");
    byId("m-title").textContent = d.title || d.id;
    var facts = byId("m-facts");
    fact(facts, "id", [code(d.id), " (" + d.kind + ")"]);
    if (d.title || d.authors) { fact(facts, "authors", (d.authors || []).join(", ")); }
    fact(facts, "method", (d.method || "–") + (d.arm ? ", " + d.arm + " arm" : ""));
    if (d.constituents.length) {
      fact(facts, "constituents", d.constituents.reduce(function (acc, c, i) { return acc.concat(i ? [", ", code(c)] : [code(c)]); }, []));
    }
    if (d.base_model) { fact(facts, "base model", code(d.base_model)); }
    var status = fact(facts, "status", []);
    if (d.status === "ok") {
      status.appendChild(document.createTextNode("scored"));
      var r = window.babelRanks && window.babelRanks[slug];
      if (d.score !== null || r) { status.appendChild(document.createTextNode("; babel score " + fmt(d.score, 2) + "; ")); }
      if (r) {  // data/ranks.js: slug -> [rank, low, high, leaderboard page]
        var link = el("a", "leaderboard page " + r[3]);
        link.href = r[3] === 1 ? "index.html" : "leaderboard-" + r[3] + ".html";
        status.appendChild(el("span", "rank " + r[0] + " of " + window.babelModels + " (95% interval " + r[1] + "–" + r[2] + "), on ", "rank"));
        status.appendChild(link);
      }
    } else {
      status.appendChild(el("strong", "failed", "fail"));
      status.appendChild(document.createTextNode(": " + d.error));
    }
    [["m-ns", d.ns], ["m-nc", d.nc]].forEach(function (x) {
      if (x[1].length) { byId(x[0]).querySelector("span").textContent = x[1].join(", "); show(x[0]); }
    });
    var box = byId("m-scores"), scores = rows(d.scores, ["task", "metric", "value", "ci_low", "ci_high", "n", "sig"]);
    if (scores.length) {
      box.appendChild(table("Every metric of every task (greyed: not live on this preset); n is the number of documents",
        ["task", "metric", "value", "95% interval", "n", "signature"], scores.map(function (s) {
          var cls = dead.indexOf(s[0]) >= 0 ? " dead" : "";
          return [s[0], [s[1], "txt" + cls], [fmt(num(s[2]), 3), "num" + cls], [fmt(num(s[3]), 3) + " – " + fmt(num(s[4]), 3), "num" + cls],
                  [s[5] === null ? "" : s[5], "num" + cls], [s[6] >= 0 ? sigs[s[6]] : "", "num sig" + cls]];
        })));
    } else {
      box.appendChild(el("p", "No scores: " + (d.error || "this model has not been evaluated.")));
    }
    var gaps = rows(d.gaps, ["task", "reference", "ref_model", "merge_value", "ref_value", "gap", "rel_gap_pct"]);
    var paired = rows(d.paired, ["task", "expert", "delta", "ci_low", "ci_high", "p_value"]);
    if (gaps.length || paired.length) {
      if (gaps.length) {
        byId("m-gaps").appendChild(table("Primary metric; gap = merge minus reference, oriented so that negative means the merge is worse",
          ["task", "reference", "model", "merge", "reference score", "gap", "gap (%)"], gaps.map(function (g) {
            return [g[0], [g[1], "txt"], [g[2] === null ? "–" : g[2], "txt"], [fmt(num(g[3]), 3), "num"], [fmt(num(g[4]), 3), "num"],
                    [fmt(num(g[5]), 3), "num"], [fmt(num(g[6]), 1), "num " + heat(num(g[6]))]];
          })));
      }
      if (paired.length) {
        byId("m-paired").appendChild(table("Paired bootstrap against the constituent expert (same resampled documents for both)",
          ["task", "expert", "difference", "95% interval", "p"], paired.map(function (p) {
            return [p[0], [p[1], "txt"], [fmt(num(p[2]), 3), "num"], [fmt(num(p[3]), 3) + " – " + fmt(num(p[4]), 3), "num"], [pval(num(p[5])), "num"]];
          })));
      }
      show("m-gap-section");
    }
    var sim = [], simOf = {};  // each pair's values by layer, pairs in the order they first appear
    rows(d.sim, ["a", "b", "relation", "layer", "value"]).forEach(function (r) {
      var k = JSON.stringify(r.slice(0, 3));
      if (!simOf[k]) { simOf[k] = { pair: r.slice(0, 3), layers: [] }; sim.push(simOf[k]); }
      simOf[k].layers.push([r[3], num(r[4])]);
    });
    if (sim.length) {
      var series = {};
      byId("m-sim").appendChild(table("Linear CKA on the probe set, mean over layers", ["model a", "model b", "relation", "mean CKA"],
        sim.map(function (s) {
          var byLayer = s.layers.sort(function (x, y) { return x[0] - y[0]; }).map(function (x) { return x[1]; });
          var vals = byLayer.filter(function (v) { return v !== null; }), p = s.pair;
          series[p[0] + " ~ " + p[1]] = byLayer;
          return [p[0], [p[1], "txt"], [p[2], "txt"], [fmt(vals.reduce(function (a, b) { return a + b; }, 0) / vals.length, 3), "num"]];
        })));
      byId("m-sim-plot").appendChild(lines(series, "Layer-wise CKA, " + d.id, "layer (0 = embeddings)", "linear CKA"));
      show("m-sim-section");
    }
    if (d.recipe) { byId("m-recipe").textContent = d.recipe; show("m-recipe-section"); }
    var p = d.provenance, prov = byId("m-prov"), gz = el("a", "results.jsonl.gz"), index = el("a", "models.json");
    gz.href = "data/results.jsonl.gz";
    index.href = "data/models.json";
    fact(prov, "results", ["every stored number of this model: its line of ", gz, " (one results file per line, in ", index, "'s order)"]);
    fact(prov, "model sha256", code(d.sha256));
    fact(prov, "suite", [d.suite + " (", code(d.suite_sha256.slice(0, 16)), "); tasks " + pairs(d.tasks, " v")]);
    fact(prov, "harness", [p.harness + ", git ", code(p.git)]);
    fact(prov, "device, dtype", p.device + ", " + p.dtype);
    fact(prov, "batching", pairs(p.batch));
    fact(prov, "seed, bootstrap", p.seed + ", " + p.bootstrap + " resamples");
    fact(prov, "evaluated", p.created_utc + " in " + fmt(p.wall_s, 1) + " s" + (p.limit ? ", limit " + p.limit : ""));
    fact(prov, "packages", pairs(p.packages));
    if (p.merge) { fact(prov, "merge", "mergekit " + p.merge.mergekit + ", seed " + p.merge.seed); }
    show("m-body");
  }

  if (!slug) { missing("No model named: open a model from the leaderboard (model.html?m=<model>)."); return; }
  var shards = parseInt(root.getAttribute("data-shards"), 10);
  var file = "data/models/" + ("0" + shardOf(slug, shards).toString(16)).slice(-2) + ".js";
  // the shard's tables hold all its models' rows as columns; a model holds [first row, rows] of each
  function part(table, at) {
    if (!at) { return null; }
    var out = {};
    Object.keys(table).forEach(function (c) { out[c] = table[c].slice(at[0], at[0] + at[1]); });
    return out;
  }
  window.babelShard = function (shard) {
    if (Object.prototype.hasOwnProperty.call(shard.models, slug)) {
      var d = shard.models[slug];
      ["scores", "gaps", "paired", "sim"].forEach(function (t) { d[t] = part(shard[t], d[t]); });
      render(d, shard.sigs);
    }
    else { missing("No model " + slug + " on this site."); }
  };
  var script = document.createElement("script");
  script.src = file;
  script.onerror = function () { missing("No model " + slug + " on this site (" + file + " is missing)."); };
  document.body.appendChild(script);
})();
