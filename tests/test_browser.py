"""The site in a real browser: Debian's headless Chromium, driven by Playwright, opens the pages from
file://, records every request and console message, sorts and filters, and saves screenshots."""

import os
import re
import shutil
from pathlib import Path

import pytest

from harness import site
from harness.suite import load_suite
from sitefixtures import EVIL, family_and_merges

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("BABELMERGE_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed: `apt-get install chromium` "
                                                          "(scripts/setup.sh --test does it as root) to run the browser tests")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    results, sim, merges = family_and_merges(6)
    out = tmp_path_factory.mktemp("site") / "site"
    manifests = {EVIL: {"title": EVIL, "authors": [EVIL], "recipe_text": "merge_method: linear\n# " + EVIL}}
    site.build(site.SiteData(suite=load_suite(), results=results, similarity=sim, merges=merges, manifests=manifests),
               out, log=lambda *_: None)
    return out


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[test])")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        yield b
        b.close()


def _open(browser, url, js=True):
    ctx = browser.new_context(java_script_enabled=js, viewport={"width": 1300, "height": 900})
    page = ctx.new_page()
    log = {"requests": [], "console": [], "dialogs": []}
    page.on("request", lambda r: log["requests"].append(r.url))
    page.on("console", lambda m: log["console"].append((m.type, m.text)))
    page.on("pageerror", lambda e: log["console"].append(("pageerror", str(e))))
    page.on("dialog", lambda d: (log["dialogs"].append(d.message), d.dismiss()))
    page.goto(url)
    page.wait_for_load_state("load")
    return page, log


def _shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_index_offline_no_errors_sorts_and_filters(built, browser):
    page, log = _open(browser, (built / "index.html").as_uri())
    root = built.as_uri()
    assert log["requests"] and all(u.startswith(root) for u in log["requests"]), log["requests"]
    assert not [c for c in log["console"] if c[0] in ("error", "pageerror")], log["console"]
    assert not log["dialogs"], "a script from a submission ran"
    _shot(page, "index")

    table = page.locator("#overall table")
    col = [t.strip() for t in table.locator("thead th").all_inner_texts()].index("mean bpb ↓") + 1

    def column():
        return [float(x) for x in table.locator(f"tbody tr td:nth-child({col}), tbody tr th:nth-child({col})").all_inner_texts()]

    before = column()
    table.locator("thead th", has_text="mean bpb").click()
    desc = column()
    table.locator("thead th", has_text="mean bpb").click()
    asc = column()
    assert desc == sorted(before, reverse=True) and asc == sorted(before)
    _shot(page, "index-sorted")

    total = page.locator("#overall tbody tr").count()
    page.select_option("select[data-filter=method]", "ties")
    visible = page.locator("#overall tbody tr:not([hidden])").count()
    assert 0 < visible < total
    assert page.locator(".count").inner_text().startswith(f"{visible} of {total}")


def test_table_complete_without_javascript(built, browser):
    page, log = _open(browser, (built / "index.html").as_uri(), js=False)
    rows = page.locator("#overall tbody tr")
    assert rows.count() == 16 + 6  # every family member and merge; the failed one is listed apart
    dead = page.locator("#overall thead th.dead")  # the task that is not live: shown, greyed, its reason in the notes
    assert dead.count() == 1 and dead.is_visible() and "mt:en-ar" in dead.inner_text()
    assert "below its shuffled-source control" in page.locator("#overall .notes").first.inner_text()
    assert page.locator("#failed").count() == 1
    assert page.locator("#filters").is_hidden()  # controls that need JS stay out of the way


def test_submission_page_escapes_and_shows_provenance(built, browser):
    """A model's page is model.html drawn from its data file: the submitter's text shown as text, its provenance,
    scores and similarity plot; a failed model's error; a name of no model says so."""
    evil = site.slug(EVIL)
    page, log = _open(browser, (built / "model.html").as_uri() + "?m=" + evil)
    page.wait_for_selector("#m-body:not([hidden])")
    assert not log["dialogs"] and not [c for c in log["console"] if c[0] in ("error", "pageerror")]
    assert EVIL in page.locator("h1").inner_text() and EVIL in page.title()
    assert page.locator("script").count() == 4  # ranks.js, model.js, site.js and the model's data file: none from the submitter
    body = page.inner_text("body")
    assert "Provenance" in body and "model sha256" in body and "rank " in page.locator("span.rank").inner_text()
    assert page.locator("#m-scores tbody tr").count() == len(site.model_data(built, EVIL)["scores"]["task"])
    svg = page.locator("#m-sim-plot svg[role=img]")
    assert svg.count() == 1 and page.locator("#m-sim-plot polyline").count() >= 1
    assert all(page.locator(f"[id='{x}']").text_content().strip() for x in svg.get_attribute("aria-labelledby").split())
    assert all(u.startswith(built.as_uri()) for u in log["requests"])
    assert page.locator("table caption").count() == page.locator("table").count() >= 3  # scores, gaps, similarity
    assert page.locator("#m-body thead th[scope=col]").count() > 0 and page.locator("#m-body tbody th[scope=row]").count() > 0
    _shot(page, "submission")
    page, log = _open(browser, (built / "model.html").as_uri() + "?m=broken-merge")
    page.wait_for_selector("#m-body:not([hidden])")
    assert "contains NaN or inf" in page.inner_text("body")
    page, log = _open(browser, (built / "model.html").as_uri() + "?m=no-such-model")
    page.wait_for_selector("#m-missing:not([hidden])")
    assert "No model no-such-model" in page.inner_text("#m-missing")
    # the page finds a model's file as site.shard_of does, for any slug
    names = ["mono-en", evil, "merge-00001", "ünïcödé-名前", "", "a" * 300]
    assert page.evaluate("([names, n]) => names.map(s => window.babelShardOf(s, n))", [names, site.MODEL_SHARDS]) == \
        [site.shard_of(x) for x in names]


def test_model_pages_link_from_the_leaderboard(built, browser):
    page, _ = _open(browser, (built / "index.html").as_uri())
    page.locator("#overall tbody tr th a").first.click()
    page.wait_for_selector("#m-body:not([hidden])")
    assert page.locator("#m-title").inner_text() and page.locator("#m-scores tbody tr").count() > 0


@pytest.fixture(scope="module")
def built_many(tmp_path_factory):
    """Enough linear merges for the set-level scatters (one point per constituent set, at least three sets)."""
    results, sim, merges = family_and_merges(30, evil=False, failed=False)
    out = tmp_path_factory.mktemp("site-many") / "site"
    site.build(site.SiteData(suite=load_suite(), results=results, similarity=sim, merges=merges), out, log=lambda *_: None)
    return out


def test_analysis_and_methods_pages(built, built_many, browser):
    for name in ("analysis", "methods"):
        page, log = _open(browser, (built / f"{name}.html").as_uri())
        assert not [c for c in log["console"] if c[0] in ("error", "pageerror")], log["console"]
        assert all(u.startswith(built.as_uri()) for u in log["requests"])
        _shot(page, name)
    page, _ = _open(browser, (built_many / "analysis.html").as_uri())
    svgs = page.locator("svg[role=img]")
    assert svgs.count() >= 2
    verdict = page.locator("table.verdicts tbody tr td").first  # the replication verdict is the first thing in view
    assert verdict.count() == 0 or verdict.bounding_box()["x"] < 400
    for i in range(svgs.count()):
        labelled = svgs.nth(i).get_attribute("aria-labelledby").split()
        assert all(page.locator(f"[id='{x}']").text_content().strip() for x in labelled)


def _luminance(rgb):
    def ch(c):
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = rgb
    return 0.2126 * ch(r) + 0.7152 * ch(g) + 0.0722 * ch(b)


def test_accessibility_basics(built, browser):
    page, _ = _open(browser, (built / "index.html").as_uri())
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.title()
    assert page.locator("table caption").count() == page.locator("table").count()
    assert page.locator("thead th[scope=col]").count() > 0 and page.locator("tbody th[scope=row]").count() > 0
    # WCAG AA contrast (4.5:1) for body text, muted text, links and table headers
    for sel in ("body", ".rule", "footer", "a", "thead th", "td.dead", "abbr.ns", "td.rate", ".notes"):
        fg, bg = page.locator(sel).first.evaluate("""e => {
            const c = s => s.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number);
            let b = e, bg = 'rgba(0, 0, 0, 0)';
            while (b && (bg === 'rgba(0, 0, 0, 0)' || bg === 'transparent')) { bg = getComputedStyle(b).backgroundColor; b = b.parentElement; }
            if (bg === 'rgba(0, 0, 0, 0)') bg = 'rgb(255, 255, 255)';
            return [c(getComputedStyle(e).color), c(bg)];
        }""")
        l1, l2 = sorted([_luminance(fg), _luminance(bg)], reverse=True)
        assert (l1 + 0.05) / (l2 + 0.05) >= 4.5, f"{sel}: contrast {(l1 + 0.05) / (l2 + 0.05):.2f}"
