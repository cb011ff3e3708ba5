"""The method leaderboard (issue 15.5): mean over scenarios, win rates and ranks checked by hand on a small table;
the page and downloads render offline, from method records alone."""

import math
import re

import numpy as np
import pandas as pd

from harness import methodboard, schema, site
from harness.suite import load_suite
from sitefixtures import family_and_merges

# three methods on four scenarios; c has no score on s4 (not applicable)
SCORES = {"a": [80.0, 60.0, 50.0, 10.0], "b": [70.0, 60.0, 90.0, 20.0], "c": [10.0, 20.0, 30.0, None]}
CATS = ["translation related", "translation related", "translation divergent", "monolingual pairs"]
CONS = [["mt-en-fr", "mt-en-es"], ["mt-en-de", "mt-en-it"], ["mt-en-ru", "mt-en-ar"], ["mono-en", "mono-de"]]


def _record(method, i, score):
    p = schema.GridPoint(parameters={}, model_parameters={"density": 0.5}, recipe={}, dev={}, dev_score=1.0)
    return schema.MethodScenarioFile(
        method=method, spec_sha256="0" * 64, scenario=f"s{i + 1}", scenario_set="x", group="g", category=CATS[i],
        constituents=CONS[i], base="mixed", suite="babel-mini-v2", suite_sha256="1" * 64, dev_suite_sha256="2" * 64,
        preset="tiny", tuning={"grid_size": 3}, points=[p], chosen=0, results="results/x.json", tasks=["lm:en"],
        live=["lm:en"], test={"lm:en": score} if score is not None else {}, score=score, provenance={})


def records():
    return [_record(m, i, s) for m, ss in SCORES.items() for i, s in enumerate(ss) if s is not None]


def test_summary_win_rates_and_ranks_by_hand():
    df = methodboard.table(records())
    summ = methodboard.summary(df, seed=0).set_index("method")
    assert summ.loc["a", "mean"] == 50.0 and summ.loc["b", "mean"] == 60.0 and summ.loc["c", "mean"] == 20.0
    assert list(summ.index) == ["b", "a", "c"] and summ.loc["c", "n"] == 3
    assert summ.loc["a", "related"] == 70.0 and summ.loc["b", "divergent"] == 90.0
    # ranks per scenario: s1 a1 b2 c3; s2 a1.5 b1.5 c3; s3 b1 a2 c3; s4 b1 a2
    assert summ.loc["a", "mean_rank"] == (1 + 1.5 + 2 + 2) / 4 and summ.loc["b", "mean_rank"] == (2 + 1.5 + 1 + 1) / 4
    assert summ.loc["c", "mean_rank"] == 3.0 and summ.loc["c", "rank_lo"] == summ.loc["c", "rank_hi"] == 3.0
    for m in "abc":
        assert summ.loc[m, "lo"] <= summ.loc[m, "mean"] <= summ.loc[m, "hi"]
    w = methodboard.win_rates(df, seed=0).set_index(["method", "other"])
    assert w.loc[("a", "b"), "win_rate"] == (1 + 0.5 + 0 + 0) / 4 and w.loc[("b", "a"), "win_rate"] == (0 + 0.5 + 1 + 1) / 4
    assert w.loc[("a", "c"), "n"] == 3 and w.loc[("a", "c"), "win_rate"] == 1.0
    assert w.loc[("a", "c"), "lo"] == 1.0 and w.loc[("c", "a"), "hi"] == 0.0


def test_failure_predictors_find_a_planted_dependence():
    rng = np.random.default_rng(1)
    sets = [f"m{i}+x" for i in range(20)]
    diag = pd.DataFrame({"cka_linear:all": np.linspace(0.1, 0.9, 20), "noise": rng.normal(size=20)}, index=sets)
    df = pd.DataFrame({"method": "a", "scenario": [f"s{i}" for i in range(20)], "category": "c", "set": sets,
                       "score": 100 * np.linspace(0.1, 0.9, 20) + rng.normal(scale=1.0, size=20)})
    p = methodboard.failure_predictors(df, diag, seed=0).set_index("diagnostic")
    assert p.loc["cka_linear:all", "rho"] > 0.9 and p.loc["cka_linear:all", "predicts"]
    assert abs(p.loc["noise", "rho"]) < p.loc["cka_linear:all", "rho"]


def test_a_method_not_shown_to_beat_the_floor_is_marked_not_ranked():
    """d's mean (21.25) is above c's (20), but its interval over scenarios reaches below 0: it is listed after the
    ranked methods, without a rank, and the others' ranks are those among a, b, c alone."""
    d = [_record("d", i, v) for i, v in enumerate([90.0, -40.0, 80.0, -45.0])]
    summ = methodboard.summary(methodboard.table(records() + d), seed=0).set_index("method")
    assert list(summ.index) == ["b", "a", "c", "d"] and summ.loc["d", "mean"] == 21.25
    assert summ.loc["d", "lo"] < 0 and not summ.loc["d", "ranked"] and math.isnan(summ.loc["d", "mean_rank"])
    assert all(summ.loc[m, "ranked"] for m in "abc")
    assert summ.loc["a", "mean_rank"] == (1 + 1.5 + 2 + 2) / 4 and summ.loc["c", "mean_rank"] == 3.0


def test_every_score_is_set_against_its_scenario_base():
    """Controls: the base model's normalized score on the record's live tasks (mean), 0 where the base is the floor,
    0 where the base's score is not known (a record on a document limit), and 0 where the base scores below the floor
    (both must be beaten). A method above the floor everywhere but
    below the scenarios' base model is not ranked."""
    norm = {("mixed", "lm:en"): 60.0, ("mixed", "lm:de"): 40.0}
    e = [_record("e", i, v) for i, v in enumerate([50.0, 55.0, 58.0, 52.0])]
    f = [_record("f", i, v) for i, v in enumerate([70.0, 75.0, 80.0, 90.0])]
    df = methodboard.controls(methodboard.table(e + f), norm, "init-s0")
    assert list(df.control) == [60.0] * 8 and set(df.control_of) == {"mixed"}
    summ = methodboard.summary(df, seed=0).set_index("method")
    assert not summ.loc["e", "ranked"] and summ.loc["e", "over"] == (50 + 55 + 58 + 52) / 4 - 60 and summ.loc["e", "lo"] > 0
    assert summ.loc["f", "ranked"] and summ.loc["f", "over"] == 78.75 - 60 and summ.loc["f", "mean_rank"] == 1.0
    two = _record("g", 0, 30.0).model_copy(update={"live": ["lm:en", "lm:de"]})
    floor = _record("g", 1, 30.0).model_copy(update={"base": "init-s0"})
    limited = _record("g", 2, 30.0).model_copy(update={"limit": 4})
    c = methodboard.controls(methodboard.table([two, floor, limited]), norm, "init-s0")
    assert list(c.control) == [50.0, 0.0, 0.0]
    assert c.control_of[1] == "init-s0, the floor" and "not known" in c.control_of[2]
    # a base below the untrained model (the mixed model on translation): the floor is the control, not the base
    worse = {("mixed", "lm:en"): -63.5}
    w = methodboard.controls(methodboard.table([_record("h", 0, -20.0)]), worse, "init-s0")
    assert list(w.control) == [0.0] and "above mixed's -63.5" in w.control_of[0]


def _tr(method, cats_scores):
    return [{"method": method, "scenario": f"{method}{i}", "category": c, "score": v}
            for i, (c, v) in enumerate(cats_scores)]


def test_translation_related_versus_divergent_involving():
    rel, mix, div = "translation related", "translation mixed", "translation divergent"
    planted = _tr("gap", [(rel, 80.0), (rel, 82.0), (rel, 84.0), (mix, 10.0), (mix, 12.0), (div, 11.0),
                          ("all translation", -100.0), ("monolingual pairs", 500.0)])
    flat = _tr("flat", [(rel, 10.0), (rel, 50.0), (rel, 30.0), (mix, 20.0), (mix, 45.0), (div, 25.0)])
    few = _tr("few", [(rel, 10.0), (rel, 20.0), (div, 5.0)])
    bd = methodboard.translation_breakdown(pd.DataFrame(planted + flat + few), seed=0).set_index("method")
    g = bd.loc["gap"]
    assert (g.n_related, g.n_divergent) == (3, 3)  # mt-all and the monolingual scenario are in neither group
    assert g.related == 82.0 and g.divergent == 11.0 and g.difference == 71.0 and g.verdict == "related higher"
    assert 80 - 12 <= g.difference_lo <= g.difference <= g.difference_hi <= 84 - 10  # within the resamples' extremes
    assert 80 <= g.related_lo <= g.related_hi <= 84 and 10 <= g.divergent_lo <= g.divergent_hi <= 12
    assert bd.loc["flat", "verdict"] == "not detected" and bd.loc["flat", "difference_lo"] < 0 < bd.loc["flat", "difference_hi"]
    assert bd.loc["few", "verdict"] == "too few scenarios" and math.isnan(bd.loc["few", "difference_lo"])
    lines = methodboard.breakdown_lines(bd.reset_index())
    assert any(ln.startswith("gap: related 82.0 [") and "(n=3)" in ln and ln.endswith("related higher") for ln in lines)
    # a method's intervals do not depend on which other methods are on the board (few resamples: any change shows)
    both = methodboard.translation_breakdown(pd.DataFrame(planted + flat), seed=0, n_boot=20).set_index("method")
    alone = methodboard.translation_breakdown(pd.DataFrame(planted), seed=0, n_boot=20).set_index("method")
    assert alone.loc["gap"].equals(both.loc["gap"])  # "flat" sorts first: it draws before "gap" in `both`


def test_method_leaderboard_page(tmp_path):
    results, sim, merges = family_and_merges(3)
    recs = records()
    specs = {"a": {"id": "a", "title": "<b>bold</b> method", "merge_method": "ties"}}
    mdir = tmp_path / "methods"
    for r in recs:
        if r.scenario != "s2":  # s2's results file is missing: no link, no broken link
            (mdir / r.method / r.scenario / "results").mkdir(parents=True)
            (mdir / r.method / r.scenario / r.results).write_text("{}")
    site.build(site.SiteData(suite=load_suite(), results=results, similarity=sim, merges=merges, method_records=recs,
                             method_specs=specs, methods_dir=mdir), tmp_path / "site", log=lambda *_: None)
    out = tmp_path / "site"
    for page in [out / "methods-leaderboard.html", *sorted((out / "method").glob("*.html"))]:
        for ref in re.findall(r'href="([^"#]+)', page.read_text()):
            assert ref.startswith("#") or (page.parent / ref).resolve().is_file(), f"{page.name}: {ref}"
    a = (out / "method" / "a.html").read_text()
    assert a.count('href="a/s1/results/x.json"') == 2 and 'href="a/s3/results/x.json"' in a and "a/s2/" not in a
    html = (out / "methods-leaderboard.html").read_text()
    assert re.findall(r'<th scope="row"><a href="method/([a-z]+)\.html">', html) == ["b", "a", "c"]
    assert "<svg" in html and "Methods x scenarios" in html and html.count("<rect") == 3 * 4
    assert "0.38 [" in html  # a's win rate against b: (1 + 0.5 + 0 + 0) / 4, rounded for display
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    page = (out / "method" / "a.html").read_text()
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold" not in page and "density=0.5" in page
    for f in ("methods.csv", "methods.json", "method_summary.csv", "method_win_rates.csv", "method_predictors.csv"):
        assert (out / "data" / f).is_file(), f
    csv = pd.read_csv(out / "data" / "methods.csv")
    assert len(csv) == 11 and math.isclose(csv[csv.method == "b"].score.mean(), 60.0)
    assert "Method leaderboard" in (out / "index.html").read_text()
