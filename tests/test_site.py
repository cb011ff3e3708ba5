"""The static site renders from results alone, escapes what submitters write, requests nothing, counts live tasks
only, greys the others with their reason, and shows the validity table."""

import csv
import json
import re

import numpy as np
import pandas as pd
import pytest

from harness import analysis, schema, site, validity
from harness.suite import load_suite
from sitefixtures import DEAD_TASK, XMI_TASK, family_and_merges

EVIL = "<script>alert(1)</script>"


def _result(name, kind, bpb, chrf, over=(3.0, 1.0, 5.0), constituents=()):
    rows = [schema.ResultRow(task="lm:en", language="en", metric="bits_per_byte", value=bpb, n=5, higher_is_better=False,
                             ci_low=bpb - 0.05, ci_high=bpb + 0.05),
            schema.ResultRow(task="mt:en-de", language="de", metric="chrf++", value=chrf, n=5, higher_is_better=True,
                             signature="nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:2.6.0"),
            schema.ResultRow(task="mt:en-de", language="de", metric="chrf++_over_control", value=over[0], ci_low=over[1],
                             ci_high=over[2], n=5, higher_is_better=True)]
    return schema.ResultsFile(
        suite="babel-mini-v2", suite_sha256="0" * 64, tasks={"lm:en": 1, "mt:en-de": 1},
        model=schema.ModelInfo(name=name, kind=kind, sha256="1" * 64, weights={}, constituents=list(constituents),
                               method=EVIL if kind == "submission" else "trained"),
        provenance=schema.Provenance(harness_version="0", git="x", packages={}, device="cpu", dtype="float32",
                                     batch={}, seed=0, created_utc="now", wall_s=0.0),
        rows=rows)


def test_site_builds_and_escapes(tmp_path):
    cons = ["family:babel-mini/mono-en", "family:babel-mini/mt-en-de"]
    results = [_result("init-s0", "family", 8.0, 5.0, over=(0.0, -1.0, 1.0)), _result("mono-en", "family", 2.0, 10.0),
               _result("mt-en-de", "family", 2.2, 30.0), _result("mixed", "family", 2.1, 20.0),
               _result(EVIL, "submission", 2.3, 25.0, over=(1.0, -1.0, 3.0), constituents=cons)]
    sim = pd.DataFrame([{"merge": EVIL, "relation": "constituents", "metric": "cka_linear", "value": 0.7, "layer": 0,
                         "a": "mono-en", "b": "mt-en-de"}])
    index = site.build(site.SiteData(suite=load_suite(), results=results, similarity=sim, merges={EVIL: cons}), tmp_path / "site", log=lambda *_: None)
    html = index.read_text()
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Content-Security-Policy" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the page must not reference other hosts"
    # the documented aggregate, by hand: lm:en floor 8, expert 2 (6 bits of gain); mt:en-de floor 5, expert 30 (25 points).
    # mt-en-de (100*5.8/6 + 100)/2 = 98.33; mixed (100*5.9/6 + 60)/2 = 79.17; mono-en (100 + 20)/2 = 60;
    # the submission (100*5.7/6 + min(80, 0))/2 = 47.5: its chrF++ is within its own control, so it earns nothing
    order = re.findall(r"<tr [^>]*><td class=\"num\">\d+</td><th scope=\"row\"><a href=\"[^\"]+\">([^<]+)</a></th>",
                       html.split('<section id="lm">')[0])
    assert order == ["mt-en-de", "mixed", "mono-en", "&lt;script&gt;alert(1)&lt;/script&gt;", "init-s0"]
    assert "47.50" in html and "98.33" in html
    for f in ("style.css", "site.js", "analysis.html", "methods.html", "data/models.json", "data/ranks.js", "data/results.jsonl.gz",
              "data/leaderboard.csv", "data/merge_gaps.csv", "data/correlations.json", "data/rank_intervals.json",
              "data/validity.csv"):
        assert (tmp_path / "site" / f).is_file(), f
    # every model's page is in its data file, drawn by model.html; what the submitter wrote stays plain data
    assert (tmp_path / "site" / "model.html").is_file() and (tmp_path / "site" / "model.js").is_file()
    files = sorted((tmp_path / "site" / "data" / "models").glob("*.js"))
    assert [f.name for f in files] == sorted({site.shard_path(site.shard_of(site.slug(r.model.name)))[12:] for r in results})
    evil = site.model_data(tmp_path / "site", EVIL)
    assert evil["id"] == EVIL and evil["method"] == EVIL and evil["sim"] == {"a": ["mono-en"], "b": ["mt-en-de"], "relation": ["constituents"], "layer": [0], "value": [70000]}  # 0.7 in units of 10^-5
    assert 'href="model.html?m=_script_alert_1___script_"' in html


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    results, sim, merges = family_and_merges(3)
    out = tmp_path_factory.mktemp("site") / "site"
    site.build(site.SiteData(suite=load_suite(), results=results, similarity=sim, merges=merges), out, log=lambda *_: None)
    return out, results


def test_dead_task_is_greyed_with_its_reason(built):
    out, results = built
    html = (out / "index.html").read_text()
    head = re.search(rf'<th scope="col" data-sort="num" class="dead mt" title="not live: ([^"]+)">{DEAD_TASK} ', html)
    assert head and head.group(1) == validity.DEAD_MT
    assert f"{DEAD_TASK} ({validity.DEAD_MT})" in html  # the footnote, readable without hovering
    assert "Counted here:</strong> 12 live tasks" in html and f"{XMI_TASK} (XMI)" in html
    overall = html.split('<section id="overall">')[1].split("</section>")[0]
    rows = re.findall(r"<tr class=.*?</tr>", overall, re.S)
    assert len(rows) == len([r for r in results if r.status == "ok"])
    dead_col = 5 + 5 + 7 + 5  # lead cells, score/rank/live/bpb/chrF, 7 lm tasks, then mt:en-de .. mt:en-ar
    for r in rows:
        cells = re.findall(r"<t[dh][^>]*>", r)
        assert 'class="num dead' in cells[dead_col] and "dead" not in "".join(cells[:dead_col])
    # init-s0's chrF++ carries no signal against its control: marked, and counted at most 0
    init = next(r for r in rows if ">init-s0<" in r)
    assert 'class="num nosig"' in init and '<abbr class="ns"' in init


def test_babel_score_by_hand(built):
    out, results = built
    vals = {(r.model.name, x.task, x.metric): x for r in results if r.status == "ok" for x in r.rows}
    floor = lambda t, m: vals[("init-s0", t, m)].value
    # live tasks of the fixture: lm:* (bpb), mt:en-{de,fr,es,it} (chrF++), mt:en-ru (XMI); mt:en-ar is dead
    parts = []
    for l in ["en", "de", "fr", "es", "it", "ru", "ar"]:
        t = f"lm:{l}"
        f, e, v = floor(t, "bits_per_byte"), vals[(f"mono-{l}", t, "bits_per_byte")].value, vals[("mixed", t, "bits_per_byte")].value
        parts.append(100 * (f - v) / (f - e))
    for x, m, sig in [("de", "chrf++", "chrf++_over_control"), ("fr", "chrf++", "chrf++_over_control"),
                      ("es", "chrf++", "chrf++_over_control"), ("it", "chrf++", "chrf++_over_control"), ("ru", "xmi", "xmi")]:
        t = f"mt:en-{x}"
        f, e, v = floor(t, m), vals[(f"mt-en-{x}", t, m)].value, vals[("mixed", t, m)].value
        share = 100 * (v - f) / (e - f)
        parts.append(share if vals[("mixed", t, sig)].ci_low > 0 else min(share, 0.0))
    board = {r["model"]: r for r in csv.DictReader((out / "data" / "leaderboard.csv").open())}
    assert float(board["mixed"]["babel_score"]) == pytest.approx(sum(parts) / len(parts))
    assert int(board["mixed"]["n_live"]) == 12


def test_methods_page_shows_the_validity_table(built):
    out, _ = built
    html = (out / "methods.html").read_text()
    table = html.split('<section id="validity">')[1].split("</section>")[0]
    assert "Validity of each task: 12 live, 1 not live" in table
    rows = re.findall(r"<tr class=\"([^\"]*)\"><th scope=\"row\">([^<]+)</th><td>([^<]+)</td>.*?</tr>", table, re.S)
    assert len(rows) == 7 + 6 * 2  # one per lm task, two candidate metrics per mt task
    assert {(c, m) for c, t, m in rows if t == DEAD_TASK} == {("dead", "chrF++"), ("dead", "XMI")}
    assert all(c == "" for c, t, _ in rows if t != DEAD_TASK)
    dead = re.search(rf"<th scope=\"row\">{DEAD_TASK}</th><td>chrF\+\+</td>.*?</tr>", table, re.S).group(0)
    assert "+0.300 [-1.700, 2.300]" in dead and validity.DEAD_MT in dead and "<td>no</td>" in dead
    csv_rows = list(csv.DictReader((out / "data" / "validity.csv").open()))
    assert len(csv_rows) == 19 and {r["task"] for r in csv_rows if r["live"] == "True"} == {
        f"lm:{l}" for l in ["en", "de", "fr", "es", "it", "ru", "ar"]} | {f"mt:en-{x}" for x in ["de", "fr", "es", "it", "ru"]}


def test_rank_intervals_ignore_dead_tasks():
    results, _, _ = family_and_merges(2, evil=False, failed=False)
    suite = load_suite()

    def ranks(task, metric, value):
        rs = [r.model_copy(deep=True) for r in results]
        for x in next(r for r in rs if r.model.name == "merge-00001").rows:
            if x.task == task and x.metric == metric:
                x.value = value
        df = analysis.tidy(rs)
        tasks, _ = validity.assess(df, suite)
        return site.rank_intervals(df, {}, suite, tasks, n_boot=50)["merge-00001"]

    assert ranks(DEAD_TASK, "chrf++", 1000.0) == ranks(DEAD_TASK, "chrf++", 0.0)  # a dead task cannot move a rank
    assert ranks("lm:en", "bits_per_byte", 0.0)[1] < ranks("lm:en", "bits_per_byte", 50.0)[0]  # a live one does


def test_ranks_of_counts_better_models_per_resample():
    """Each model's rank interval against a count, per resample, of the models scoring higher (and of tied models
    listed earlier): 2.5th and 97.5th percentiles over resamples, truncated to whole ranks."""
    rng = np.random.default_rng(1)
    s = rng.normal(size=(120, 60))
    s[:8] = -np.inf          # no live task: tied last
    s[40:45] = s[39]         # tied scores: the earlier model ranks first
    rank = np.array([[1 + np.sum(s[:, b] > s[i, b]) + np.sum(s[:i, b] == s[i, b]) for b in range(s.shape[1])]
                     for i in range(len(s))])
    lo, hi = np.percentile(rank, [2.5, 97.5], axis=1).astype(int)
    got = site.ranks_of([f"m{i:03d}" for i in range(len(s))], s)
    assert [got[f"m{i:03d}"] for i in range(len(s))] == list(zip(lo.tolist(), hi.tolist()))
    assert got["m000"] == (113, 113) and got["m007"] == (120, 120)  # tied last: in the order of the models


def _tree(out):
    """Every file of a build, the build time and git hash in page footers blanked."""
    return {str(p.relative_to(out)): re.sub(rb"Built [^ ]+ from git <code>[^<]*</code>", b"Built - from git -", p.read_bytes())
            for p in sorted(out.rglob("*")) if p.is_file()}


def test_rebuild_reuses_statistics_and_remakes_only_what_changed(tmp_path):
    results, sim, merges = family_and_merges(4)
    manifests = {m: {"title": f"title of {m}", "authors": ["a"], "recipe_text": "merge_method: linear"} for m in merges}
    data = lambda man: site.SiteData(suite=load_suite(), results=results, similarity=sim, merges=merges, manifests=man)
    out = tmp_path / "site"
    site.build(data(manifests), out, log=lambda *_: None)
    first, files = dict(site.BUILD_STATS), _tree(out)
    assert not first["stats_hit"] and first["files_reused"] == 0 and first["models_written"] == len(results)
    site.build(data(manifests), out, log=lambda *_: None)
    assert site.BUILD_STATS["stats_hit"] and site.BUILD_STATS["files_made"] == 0
    assert _tree(out) == files
    # a new title is shown on its model's page only: exactly that page is rendered again
    name = list(merges)[1]
    site.build(data({**manifests, name: {**manifests[name], "title": "a better title"}}), out, log=lambda *_: None)
    assert site.BUILD_STATS["stats_hit"] and site.BUILD_STATS["files_made"] == 1
    after = _tree(out)
    changed = {p for p in files if after[p] != files[p]}
    assert changed == {site.shard_path(site.shard_of(site.slug(name))), ".build-keys.json"}
    assert site.model_data(out, name)["title"] == "a better title"


def test_incremental_build_equals_a_fresh_build(tmp_path):
    """A submission added to a built site: the incremental rebuild holds the same bytes as a build from nothing."""
    build = lambda n, out: site.build(site.SiteData(suite=load_suite(), **dict(zip(
        ("results", "similarity", "merges"), family_and_merges(n, seed=3, failed=False)))), out, log=lambda *_: None)
    build(4, tmp_path / "inc")
    build(5, tmp_path / "inc")
    assert not site.BUILD_STATS["stats_hit"] and site.BUILD_STATS["files_reused"] > 0  # style.css, site.js at least
    build(5, tmp_path / "fresh")
    assert _tree(tmp_path / "inc") == _tree(tmp_path / "fresh")


def test_statistics_kept_by_their_own_inputs_give_a_fresh_build(tmp_path):
    """One more submission over 40: the correlations and fits whose points it leaves alone, and every other model's
    bootstrap scores, come from the cache (sitecache.Memo, sitecache.rows); the site equals a build from nothing."""
    build = lambda n, out: site.build(site.SiteData(suite=load_suite(), **dict(zip(
        ("results", "similarity", "merges"), family_and_merges(n, seed=4, failed=False)))), out, log=lambda *_: None)
    build(40, tmp_path / "inc")
    cold = dict(site.BUILD_STATS)
    build(41, tmp_path / "inc")
    assert cold["memo_hits"] == 0 and cold["memo_misses"] > 20
    assert site.BUILD_STATS["memo_hits"] > 0 and site.BUILD_STATS["memo_misses"] > 0
    build(41, tmp_path / "fresh")
    assert site.BUILD_STATS["memo_hits"] == 0
    assert _tree(tmp_path / "inc") == _tree(tmp_path / "fresh")


def test_a_forked_rebuild_gives_the_same_site(tmp_path, monkeypatch):
    """A rebuild after one new submission beside the forked set-level job (the per-model statistics and leaderboard
    spliced from the last build's) equals a build from nothing in one process, and a build of the same inputs again
    makes nothing."""
    build = lambda n, out: site.build(site.SiteData(suite=load_suite(), **dict(zip(
        ("results", "similarity", "merges"), family_and_merges(n, seed=6, failed=False)))), out, log=lambda *_: None)
    monkeypatch.setattr(site, "BACKGROUND_MIN", 1)
    build(30, tmp_path / "inc")
    build(31, tmp_path / "inc")
    assert not site.BUILD_STATS["stats_hit"]
    before = _tree(tmp_path / "inc")
    build(31, tmp_path / "inc")
    assert site.BUILD_STATS["stats_hit"] and site.BUILD_STATS["files_made"] == 0 and _tree(tmp_path / "inc") == before
    monkeypatch.setattr(site, "BACKGROUND_MIN", 10**9)
    build(31, tmp_path / "fresh")
    assert _tree(tmp_path / "inc") == _tree(tmp_path / "fresh")
    assert len(json.loads((tmp_path / "fresh" / "data" / "rank_intervals.json").read_text())) > 30


def test_set_statistics_in_a_forked_process_give_the_same_site(tmp_path, monkeypatch):
    """Large sites compute the set-level statistics in a forked process, and make the model data files and per-merge
    downloads in worker processes (one per core, less the statistics' own): the site is the same as when all is
    done in the build's own process."""
    data = site.SiteData(suite=load_suite(), **dict(zip(("results", "similarity", "merges"), family_and_merges(30, seed=6))))
    monkeypatch.setattr(site, "BACKGROUND_MIN", 1)
    monkeypatch.setattr(site, "POOL_MIN", 1)
    monkeypatch.setattr(site.os, "cpu_count", lambda: 3)
    site.build(data, tmp_path / "forked", log=lambda *_: None)
    assert site.BUILD_STATS["memo_misses"] > 0  # counted in the child, reported back
    assert site.BUILD_STATS["models_written"] == len(data.results) and site.BUILD_STATS["model_workers"] == 2
    assert 0 < site.BUILD_STATS["tidy_made_beside"] < len(data.results)  # the later half of the tidy rows, by the child
    assert (tmp_path / "forked" / "data" / "merge_gaps.csv").stat().st_size > 1000
    monkeypatch.setattr(site, "BACKGROUND_MIN", 10**9)
    monkeypatch.setattr(site, "POOL_MIN", 10**9)
    site.build(data, tmp_path / "here", log=lambda *_: None)
    assert _tree(tmp_path / "forked") == _tree(tmp_path / "here")


def test_the_methods_leaderboard_sees_the_set_diagnostics_of_the_analysis():
    """The methods leaderboard is made before the set-level statistics end, from the per-model statistics' own
    copy of the constituent sets' diagnostics: it equals the analysis tables' set_diagnostics."""
    results, sim, merges = family_and_merges(40, seed=8, failed=False)
    data = site.SiteData(suite=load_suite(), results=results, similarity=sim, merges=merges)
    df = analysis.tidy(results)
    ms = site._model_statistics(data, df)
    sets = site._set_statistics(data, df, ms)
    assert not ms["set_diag"].empty
    pd.testing.assert_frame_equal(ms["set_diag"], sets["tables"]["set_diagnostics"])


def test_a_rebuild_computes_only_the_changed_models_statistics(tmp_path, monkeypatch):
    """After one merge is added, one changed and one removed, the per-model statistics (scored rows, merge gaps,
    paired tests against the experts, leaderboard) are computed for those only, the others taken from the last
    build, and equal a computation over every model."""
    from harness import sitecache

    boards = []  # the models each leaderboard computation is given
    leaderboard = analysis.leaderboard
    monkeypatch.setattr(analysis, "leaderboard", lambda df, *a: boards.append(sorted(set(df["model"]))) or leaderboard(df, *a))

    def with_docs(results, merges, seed):
        rng = np.random.default_rng(seed)
        ids = [str(i) for i in range(30)]
        return {r.model.name: schema.DocsFile(suite="s", suite_sha256="0", model_sha256="1", tasks={
            t: schema.TaskDocs(ids=ids, ll=(-rng.uniform(40, 60, 30)).tolist(), bytes=[40] * 30) for t in ("lm:de", "lm:fr")})
            for r in results if r.status == "ok"}

    results, sim, merges = family_and_merges(41, seed=9, failed=False)
    docs = with_docs(results, merges, 1)
    out = tmp_path / "site"
    first = dict(list(merges.items())[:40])
    site.build(site.SiteData(suite=load_suite(), results=[r for r in results if r.model.name != "merge-00040"],
                             similarity=sim[sim["merge"] != "merge-00040"], merges=first, docs=docs), out, log=lambda *_: None)
    changed = [r.model_copy(deep=True) for r in results if r.model.name != "merge-00007"]
    # merge-00003's scores become merge-00030's: a tie on the leaderboard, which the names order (as the full computation)
    next(r for r in changed if r.model.name == "merge-00003").rows = [
        row.model_copy() for row in next(r for r in changed if r.model.name == "merge-00030").rows]
    merges2 = {m: c for m, c in merges.items() if m != "merge-00007"}
    data = site.SiteData(suite=load_suite(), results=changed, similarity=sim[sim["merge"] != "merge-00007"], merges=merges2,
                         docs={m: d for m, d in docs.items() if m != "merge-00007"})
    boards.clear()
    site.build(data, out, log=lambda *_: None)
    assert boards == [["merge-00003", "merge-00040"]]
    ms = sitecache.cached_value(site.stats_folder(out), "stats-models", site.BUILD_STATS["stats_key"])
    assert ms["recomputed"] == ["merge-00003", "merge-00040"]
    full = site._model_statistics(data, analysis.tidy(changed))
    assert full["recomputed"] is None and not full["paired"].empty
    for k in ("scored", "merge_gaps", "paired", "set_diag", "task_gaps"):
        pd.testing.assert_frame_equal(ms[k], full[k], obj=k)
    for k, (names, starts) in ms["runs"].items():  # kept for the next rebuild: as found by reading the names again
        want = site._runs(ms[k], "model" if k == "scored" else "merge")
        assert names == want[0] and np.array_equal(starts, want[1]) and len(names) > 10, k
    board = sitecache.cached_value(site.stats_folder(out), "stats-board", site.BUILD_STATS["stats_key"])
    pd.testing.assert_frame_equal(board, analysis.leaderboard(analysis.tidy(changed), full["tasks"], full["scored"]))
    assert board.loc["merge-00003", "babel_score"] == board.loc["merge-00030", "babel_score"]
    pd.testing.assert_series_equal(ms["shares"], full["shares"])
    assert ms["vtable"] == full["vtable"]


def test_a_models_bootstrap_scores_do_not_depend_on_the_others():
    """score_samples: a model's row is the same whatever other models are scored with it and however they are
    chunked (what lets a rebuild keep every other model's row); with no uncertainty (standard errors 0, no
    per-document statistics) every resample is the model's babel score as the leaderboard computes it."""
    results, _, _ = family_and_merges(6, evil=False, failed=False)
    suite = load_suite()
    df = analysis.tidy(results)
    tasks, _ = validity.assess(df, suite)
    s = analysis.scored(df, tasks)
    models, full = site.score_samples(s, {}, suite, tasks, n_boot=400, chunk=3)
    sub = models[1::2]
    got, part = site.score_samples(s[s["model"].isin(sub)], {}, suite, tasks, n_boot=400)
    assert got == sub and np.array_equal(part, full[1::2])
    assert np.isfinite(full).all() and (full.std(1) > 0).all()
    board = analysis.leaderboard(df, tasks, s)["babel_score"]
    exact = site.score_samples(s.assign(stderr=0.0), {}, suite, tasks, n_boot=5)[1]
    assert np.allclose(exact, np.array([board[m] for m in models])[:, None], rtol=0, atol=1e-9)


def test_leaderboard_pages_hold_every_model_once_and_stay_small(tmp_path, monkeypatch):
    """The leaderboard is cut into pages of PAGE_ROWS rows (here 4): every scored model is on exactly one page, and
    the bytes per row bound the index at the real PAGE_ROWS under 2 MB however many submissions there are."""
    real_rows = site.PAGE_ROWS
    monkeypatch.setattr(site, "PAGE_ROWS", 4)
    results, sim, merges = family_and_merges(6, evil=False)
    out = tmp_path / "site"
    site.build(site.SiteData(suite=load_suite(), results=results, similarity=sim, merges=merges), out, log=lambda *_: None)
    pages = [out / "index.html"] + sorted(out.glob("leaderboard-*.html"), key=lambda p: int(p.stem.split("-")[1]))
    scored = [r.model.name for r in results if r.status == "ok"]
    assert len(pages) == -(-len(scored) // 4)
    seen, shown_ci = [], {}
    for p in pages:
        overall = p.read_text().split('<section id="lm">')[0]
        rows = re.findall(r'<th scope="row"><a href="model\.html\?m=[^"]+">([^<]+)</a></th>', overall)
        assert 1 <= len(rows) <= 4 and "\x00" not in p.read_text()
        seen += rows
        # each row's rank interval, as the rank intervals download has it
        shown_ci.update((m, [int(lo), int(hi)]) for m, lo, hi in re.findall(
            r'">([^<]+)</a></th>(?:(?!</tr>).)*?<td class="num">(\d+)–(\d+)</td>', overall, flags=re.S))
    assert sorted(seen) == sorted(scored)
    assert shown_ci == json.loads((out / "data" / "rank_intervals.json").read_text())
    assert max(p.stat().st_size for p in pages) / 4 * real_rows < 2_000_000


def test_results_download_holds_every_results_file_after_a_rebuild(tmp_path):
    """data/results.jsonl.gz is one gzip stream of every results file, one per line, in the order of models.json;
    after a rebuild with one more submission, the stream (old parts copied, the new one made) still decodes to
    exactly the stored results."""
    import gzip

    out = tmp_path / "site"
    for n in (3, 4):
        results, sim, merges = family_and_merges(n, seed=7, failed=False)
        site.build(site.SiteData(suite=load_suite(), results=results, similarity=sim, merges=merges), out, log=lambda *_: None)
        lines = gzip.decompress((out / "data" / "results.jsonl.gz").read_bytes()).decode("utf-8").splitlines()
        assert [json.loads(x) for x in lines] == [r.model_dump(mode="json") for r in results]
        index = json.loads((out / "data" / "models.json").read_text())
        assert [m["model"] for m in index] == [r.model.name for r in results] == [json.loads(lines[m["line"] - 1])["model"]["name"] for m in index]


def test_a_build_that_stops_half_way_is_made_again_in_full(tmp_path, monkeypatch):
    """Files are written in place; a build that fails after writing some of them leaves no keys, so the next
    build makes every file again and ends with the same bytes as a build from nothing."""
    results, sim, merges = family_and_merges(4, seed=2, failed=False)
    data = lambda res: site.SiteData(suite=load_suite(), results=res, similarity=sim, merges=merges)
    out = tmp_path / "inc"
    site.build(data(results), out, log=lambda *_: None)
    changed = [r.model_copy(update={"provenance": r.provenance.model_copy(update={"wall_s": 99.0})}) for r in results]
    real = site._table_of
    monkeypatch.setattr(site, "_table_of", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("stop")))
    with pytest.raises(RuntimeError):
        site.build(data(changed), out, log=lambda *_: None)
    assert not (out / site.sitecache.KEYS).exists()
    monkeypatch.setattr(site, "_table_of", real)
    site.build(data(changed), out, log=lambda *_: None)
    assert site.BUILD_STATS["files_reused"] == 0
    site.build(data(changed), tmp_path / "fresh", log=lambda *_: None)
    assert _tree(out) == _tree(tmp_path / "fresh")


def test_the_site_does_not_import_torch():
    """Building the site needs no model code: importing what a build imports (the methods leaderboard's scenario
    set and reference grid included) leaves torch unloaded (it cost every build two seconds)."""
    import subprocess
    import sys

    code = ("import sys; from harness import site, methods, methodboard, scenarios, grid; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=site.ROOT).returncode == 0


def test_model_data_holds_each_results_file_in_page_order(tmp_path):
    """A model's data file holds its results file's rows as its page shows them: tasks in the suite's order (a task
    the suite does not know after them, in the order it first appears), each task's rows as stored; numbers rounded
    to DATA_DIGITS decimals, missing and infinite ones as null; every signature once per model, each row pointing at
    its own. Computed here from the results files, not from the site's code."""
    suite = load_suite()
    order = [f"lm:{x}" for x in suite["languages"]] + [f"mt:{suite['pivot']}-{x}" for x in suite["languages"] if x != suite["pivot"]]
    results = [_result("init-s0", "family", 8.0, 5.0, over=(0.0, -1.0, 1.0)), _result("mono-en", "family", 2.0, 10.0),
               _result("mt-en-de", "family", 2.2, 30.0)]
    results += [_result(f"m{i}", "submission", 1.0 + i / 7, 30.0 - i, over=(v, v - 1, v + 1))
                for i, v in enumerate([0.5, float("nan"), -0.0, 1e12, 1 / 3])]
    results[4].rows.insert(0, schema.ResultRow(task="zz:other", language="xx", metric=EVIL, value=float("inf"), n=3,
                                               higher_is_better=True, signature=EVIL))
    results[5].rows.append(schema.ResultRow(task="lm:en", language="en", metric="late", value=None, n=1, higher_is_better=False))
    results[6] = results[6].model_copy(update={"status": "failed", "error": "boom"})  # its rows are not in the tidy rows
    out = tmp_path / "site"
    site.build(site.SiteData(suite=suite, results=results), out, log=lambda *_: None)
    fixed = lambda v: None if v is None or not np.isfinite(v) else [v] if abs(v) >= 1e9 else round(v * 10 ** site.DATA_DIGITS)
    for r in results:
        first = list(dict.fromkeys(x.task for x in r.rows))
        tasks = sorted(first, key=lambda t: (order.index(t) if t in order else len(order) + first.index(t)))
        rows = [x for t in tasks for x in r.rows if x.task == t]
        got = site.model_data(out, r.model.name)
        assert got["scores"] == {"task": [x.task for x in rows], "metric": [x.metric for x in rows],
                                 "value": [fixed(x.value) for x in rows], "ci_low": [fixed(x.ci_low) for x in rows],
                                 "ci_high": [fixed(x.ci_high) for x in rows], "n": [x.n for x in rows],
                                 "signature": [x.signature for x in rows]}
        assert (got["id"], got["method"], got["status"], got["sha256"]) == (r.model.name, r.model.method, r.status, r.model.sha256)
    m1 = site.model_data(out, "m1")["scores"]
    assert m1["task"][-1] == "zz:other" and m1["value"][-1] is None  # a task the suite does not know; inf
    assert site.model_data(out, "m3")["scores"]["value"][-1] == [1e12]  # too large for the units: as itself


def test_digest_writes_plain_lists_as_canonical_json_does():
    """sitecache.digest writes a list of plain strings, an empty dict and a dict of such lists itself, skipping the JSON
    encoder; the bytes (so every cache key) must be canonical_json's, for strings that need escaping too (those take the encoder)."""
    from harness import sitecache, store

    for part in ([], ["mono-en", "family:babel-mini/mt-en-de"], ['a"b', "c"], ["a\\b"], ["é", "x"], ["\x01"], ["\u2028", "\x7f"],
                 [1, "a"], {}, {"a": [1, 2]}, ("a", "b"), [["a"]], {"m-2": ["b", "a"], "m-1": [], "m-10": ["c"]},
                 {"m": ["a"], 'q"': ["b"]}, {"m": ["a"], "n": ['q"']}, {"b": {"a": ["x"]}, "a": ["y"]}):
        assert sitecache.canonical_text(part) == store.canonical_json(part), part


def test_files_no_longer_made_are_removed_with_the_folders_they_leave_empty(tmp_path):
    """A build removes the previous build's files it did not make again, and folders left empty (models/, which held
    a page per model before the model data files), not a folder that still holds a file."""
    from harness import sitecache

    out = tmp_path / "site"
    outs = sitecache.Outputs(out)
    for rel in ("models/a.html", "models/deep/b.html", "data/kept.csv", "data/gone.csv"):
        outs.text(rel, rel, lambda rel=rel: rel)
    outs.save()
    outs = sitecache.Outputs(out)
    outs.text("data/kept.csv", "data/kept.csv", lambda: "never called: unchanged")
    outs.save()
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [".build-keys.json", "data", "data/kept.csv"]


def test_cache_tables_grow_by_additions_and_are_compacted_with_the_same_rows(tmp_path):
    """sitecache's per-key tables (blocks, rows, strings): a call with one new key writes that key's rows as one more
    file, not the table again; after SEGMENTS files, or when many keys are new or no longer asked for, the table is
    written again as one. Every call returns what computing every key's rows from nothing gives, and computes only
    the keys the table lacks (those sitecache.missing names)."""
    import random

    from harness import sitecache

    def content(k):  # a key's rows: 0 to 4 rows of a string (or None) and a number, by the key alone
        r = random.Random(k)
        n = r.randint(0, 4)
        return n, [f"s{r.randint(0, 30)}" if r.random() > 0.2 else None for _ in range(n)], [r.random() for _ in range(n)]

    def rows_of(keys):
        lens, s, x = [], [], []
        for k in keys:
            n, a, b = content(k)
            lens.append(n)
            s += a
            x += b
        return {"s": np.array(s, dtype=object), "x": np.array(x)}, lens

    def files(name):
        return sorted(p.name for p in tmp_path.glob(f"{name}*.npz"))

    runs = [range(40)] + [range(40 + j) for j in range(1, sitecache.SEGMENTS + 2)] + [range(15, 60), range(60, 0, -1), range(3, 200)]
    for run in runs:
        keys = [str(k) for k in run]
        asked = []
        missing = sitecache.missing(tmp_path, "t", keys, "v")

        def make(idx, keys=keys):
            asked.append(idx)
            return rows_of([keys[i] for i in idx])

        got = sitecache.blocks(tmp_path, "t", keys, make, ("s",), version="v")
        want = rows_of(keys)[0]
        assert list(np.concatenate([b["s"] for b in got])) == list(want["s"])
        assert np.concatenate([b["x"] for b in got]).tolist() == want["x"].tolist()
        assert asked == ([missing] if missing else [])
        r = sitecache.rows(tmp_path, "r", keys, lambda idx, keys=keys: np.array([[float(keys[i]), -float(keys[i])] for i in idx]), "v")
        assert r.tolist() == [[float(k), -float(k)] for k in keys]
        st = sitecache.strings(tmp_path, "s", keys, lambda idx, keys=keys: [[f"<{keys[i]}>", "é" * int(keys[i])] for i in idx], "v")
        assert st == [[f"<{k}>", "é" * int(k)] for k in keys]
        if len(run) == 41:
            assert missing == [40] and files("t") == ["t+1.npz", "t.npz"]  # one key more: one file more
        for name in ("t", "r", "s"):
            assert len(files(name)) <= sitecache.SEGMENTS
    assert files("t") == ["t.npz"] and files("r") == ["r.npz"]  # many new keys: written again as one


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_a_spliced_file_holds_its_old_ranges_and_new_parts(tmp_path, monkeypatch, kernel_copy):
    """Outputs._splice writes a file of new parts and ranges of the file it replaces (copied by the kernel where it
    can, else read and written): the bytes are those of the parts themselves, whichever way they were copied."""
    from harness import sitecache

    if not kernel_copy:
        monkeypatch.delattr(sitecache.os, "copy_file_range", raising=False)
    parts = {f"p{j}": (f"part {j} " * (j * 3000 + 1)).encode() for j in range(6)}
    outs = sitecache.Outputs(tmp_path / "site")
    outs.concat("data/x.txt", [(n, "k0") for n in parts], dict(enumerate(parts.values())))
    outs.save()
    changed = {**parts, "p2": b"a new second part", "p9": b"a part at the end"}
    del changed["p4"]
    outs = sitecache.Outputs(tmp_path / "site")
    items = [(n, "k1" if n in ("p2", "p9") else "k0") for n in changed]
    outs.concat("data/x.txt", items, {j: changed[n] for j, (n, _) in enumerate(items) if n in ("p2", "p9")})
    outs.save()
    path = tmp_path / "site" / "data" / "x.txt"
    assert path.read_bytes() == b"".join(changed.values())
    # a part added at the end and the last one changed: the file is cut after the parts it keeps, the rest written
    # in place (the same file), reading the range it moves before it cuts
    inode = path.stat().st_ino
    last = {**changed, "p5": b"the fifth, shorter", "p10": b"one more"}
    items = [(n, "k2" if n in ("p5", "p10") else k) for n, k in items] + [("p10", "k2")]
    items = [items[j] for j in (0, 1, 2, 3, 6, 4, 5)]  # p9 after the changed p5 and the new p10: read from its old place
    last = {n: last[n] for n, _ in items}
    outs = sitecache.Outputs(tmp_path / "site")
    outs.concat("data/x.txt", items, {j: last[n] for j, (n, _) in enumerate(items) if n in ("p5", "p10")})
    outs.save()
    assert path.read_bytes() == b"".join(last.values()) and path.stat().st_ino == inode


def test_per_model_keys_tell_apart_what_digest_tells_apart():
    """sitecache.digests: one sha256 per row over the prefix and the row's parts, each delimited by its length (so
    a part's boundary, an empty part and a missing one all change the key); checked against hashlib by hand."""
    import hashlib

    from harness import sitecache

    rows = [("ab", "c"), ("a", "bc"), ("", None), (None, ""), ("-", None), (None, None), ("é", "x")]
    got = sitecache.digests("fam", rows)
    assert len(set(got)) == len(rows)
    assert got[0] == hashlib.sha256(b"3:fam2:ab1:c").hexdigest()
    assert got[2] == hashlib.sha256(b"3:fam0:-").hexdigest()
    assert got[6] == hashlib.sha256("3:fam1:é1:x".encode()).hexdigest()
    assert sitecache.digests("fam2:ab", [("c",)]) != sitecache.digests("fam", [("ab", "c")])


def test_the_rank_order_is_numpys_stable_sort():
    """site._stable_order: each row's order as numpy's stable argsort gives it (ties and NaN in column order), on
    rows with many ties, NaN, infinities and none of them."""
    rng = np.random.default_rng(4)
    a = rng.integers(0, 6, (50, 300)).astype(float)
    a[rng.random(a.shape) < 0.1] = np.nan
    a[rng.random(a.shape) < 0.05] = -np.inf
    for rows in (a, rng.random((20, 1000)), np.zeros((3, 7)), np.full((2, 5), np.nan), a[:, :1]):
        assert (site._stable_order(rows) == rows.argsort(1, kind="stable")).all()
