"""The static site renders from results alone, escapes what submitters write, and requests nothing."""

import re

import pandas as pd

from harness import schema, site
from harness.suite import load_suite

EVIL = "<script>alert(1)</script>"


def _result(name, kind, bpb, chrf, constituents=()):
    rows = [schema.ResultRow(task="lm:en", language="en", metric="bits_per_byte", value=bpb, n=5, higher_is_better=False),
            schema.ResultRow(task="mt:en-de", language="de", metric="chrf++", value=chrf, n=5, higher_is_better=True,
                             signature="nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:2.6.0")]
    return schema.ResultsFile(
        suite="babel-mini-v1", suite_sha256="0" * 64, tasks={"lm:en": 1, "mt:en-de": 1},
        model=schema.ModelInfo(name=name, kind=kind, sha256="1" * 64, weights={}, constituents=list(constituents),
                               method=EVIL if kind == "submission" else "trained"),
        provenance=schema.Provenance(harness_version="0", git="x", packages={}, device="cpu", dtype="float32",
                                     batch={}, seed=0, created_utc="now", wall_s=0.0),
        rows=rows)


def test_site_builds_and_escapes(tmp_path):
    cons = ["family:babel-mini/mono-en", "family:babel-mini/mt-en-de"]
    results = [_result("mono-en", "family", 2.0, 10.0), _result("mt-en-de", "family", 2.2, 30.0),
               _result("mixed", "family", 2.1, 20.0), _result(EVIL, "submission", 2.3, 25.0, cons)]
    sim = pd.DataFrame([{"merge": EVIL, "relation": "constituents", "metric": "cka_linear", "value": 0.7, "layer": 0,
                         "a": "mono-en", "b": "mt-en-de"}])
    index = site.build(site.SiteData(suite=load_suite(), results=results, similarity=sim, merges={EVIL: cons}), tmp_path / "site", log=lambda *_: None)
    html = index.read_text()
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Content-Security-Policy" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the page must not reference other hosts"
    # leaderboard order follows the documented aggregate: mt-en-de (100*(1-2.2/8)+30)/2 = 51.25 is first
    first = re.search(r"<tbody>.*?<th scope=\"row\"><a href=\"[^\"]+\">([^<]+)</a></th>", html, re.S).group(1)
    assert first == "mt-en-de"
    for f in ("style.css", "site.js", "analysis.html", "methods.html", "data/results.csv", "data/results.json",
              "data/leaderboard.csv", "data/merge_gaps.csv", "data/correlations.json", "data/rank_intervals.json"):
        assert (tmp_path / "site" / f).is_file(), f
    assert len(list((tmp_path / "site" / "models").glob("*.html"))) == len(results)
