"""Formulas on the review pages: rendered with the vendored KaTeX, the source one key away,
money left as text, nothing from the text executable, under the strict CSP."""

from __future__ import annotations

import glob
import os
import re
import tomllib

import httpx
import pytest

from tests.review.conftest import ROOT, start_review
from tests.review.store_builder import (
    MATH_QUESTION,
    MATH_REASON,
    MATH_STEPS,
    MIXED_STEP,
    PLANTED,
    PROSE_STEPS,
    build_math_store,
)

pytestmark = pytest.mark.slow  # `rmforge review` in a process, Chromium

expect = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra").expect
expect.set_options(timeout=15_000)  # a shared 2-core machine can be slow; a bug stays a failure
STEP = {name: f"#step-{i} div.text" for i, name in enumerate(MATH_STEPS)}
REVIEW = ROOT / "rmforge" / "review"
# Every CSP violation the page meets, recorded before any of its scripts runs.
RECORD_CSP = (
    "window.__csp = []; document.addEventListener('securitypolicyviolation',"
    " (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`))"
)


@pytest.fixture(scope="module")
def math_review(tmp_path_factory):
    """`rmforge review` over the math store: its base URL and rollout ids."""
    db = str(tmp_path_factory.mktemp("math_review") / "review.duckdb")
    ids = build_math_store(db)
    process, url = start_review(db)
    yield url, ids
    process.terminate()
    process.wait(timeout=10)


def open_rollout(page, math_review, name: str) -> None:
    url, ids = math_review
    page.goto(f"{url}/rollout?id={ids[name]}")
    expect(page.locator("#step-0")).to_have_class(re.compile("current"))  # review.js has run


def test_formulas_render_in_steps_question_reason_and_critique(math_review, page):
    open_rollout(page, math_review, "math")
    inline = page.locator(STEP["inline"])
    expect(inline.locator(".katex")).to_have_count(1)
    for source in ("\\(", "\\frac", "\\)"):
        expect(inline).not_to_contain_text(source, use_inner_text=True)  # shown rendered, not as source
    expect(inline.locator(".katex .mfrac")).to_be_visible()
    expect(page.locator(STEP["display"]).locator(".katex-display")).to_have_count(2)
    expect(page.locator(STEP["display"]).locator(".katex")).to_have_count(3)  # \[ \], $$ $$ and $x + 1 = 2$
    expect(page.locator(STEP["boxed"]).locator(".katex")).to_have_count(2)  # \(\boxed{40}\) and the bare \boxed{40}
    expect(page.locator(".question .katex")).to_have_count(1)
    expect(page.locator(".question")).to_contain_text("Sam buys pens at $2 each and $3 a box. What is")
    expect(page.locator("#step-0 .reason .katex")).to_have_count(1)
    page.locator(".critiques summary").click()
    expect(page.locator(".critiques div.text .katex")).to_have_count(1)
    # Each formula keeps its source on hover.
    expect(inline.locator(".math-formula")).to_have_attribute("title", "\\( \\frac{120}{2} = 60 \\)")


def test_the_queue_renders_the_questions_formulas(math_review, page):
    url, _ = math_review
    page.goto(url + "/")
    question = page.locator("td.q", has_text="Sam buys pens")
    expect(question.locator(".katex")).to_have_count(1)
    expect(question).to_contain_text("$2 each and $3 a box")


def test_s_shows_the_source_verbatim_and_the_verdict_keys_still_work(math_review, page):
    open_rollout(page, math_review, "math")
    inline = page.locator(STEP["inline"])
    expect(inline.locator(".katex")).to_be_visible()
    page.keyboard.press("s")
    expect(inline).to_have_text(MATH_STEPS["inline"], use_inner_text=True)
    expect(page.locator(".question")).to_have_text(MATH_QUESTION, use_inner_text=True)
    expect(page.locator("#step-0 .reason")).to_have_text(MATH_REASON, use_inner_text=True)
    expect(inline.locator(".katex")).to_be_hidden()

    page.reload()  # the choice holds on the next page
    expect(page.locator("#step-0")).to_have_class(re.compile("current"))
    expect(inline.locator(".katex")).to_have_count(1)
    expect(inline.locator(".katex")).to_be_hidden()
    expect(inline).to_have_text(MATH_STEPS["inline"], use_inner_text=True)
    page.keyboard.press("c")  # marks step 1; the label comes back as a swapped-in item
    expect(page.locator("#step-0 button.mark-correct")).to_have_class(re.compile("chosen"))
    expect(page.locator("#step-1")).to_have_class(re.compile("current"))
    expect(inline).to_have_text(MATH_STEPS["inline"], use_inner_text=True)

    page.keyboard.press("s")
    expect(inline.locator(".katex")).to_be_visible()  # the swapped-in step was typeset too
    expect(inline).not_to_contain_text("\\frac", use_inner_text=True)
    page.keyboard.press("k")
    page.keyboard.press("i")
    expect(page.locator("#step-0 button.mark-incorrect")).to_have_class(re.compile("chosen"))
    expect(inline.locator(".katex")).to_be_visible()


def test_dollar_amounts_stay_text_beside_real_formulas(math_review, page):
    open_rollout(page, math_review, "prose")
    for i, text in enumerate(PROSE_STEPS):
        step = page.locator(f"#step-{i} div.text")
        expect(step).to_have_text(text, use_inner_text=True)
        expect(step.locator(".katex")).to_have_count(0)
    mixed = page.locator(f"#step-{len(PROSE_STEPS)} div.text")
    expect(mixed.locator(".katex")).to_have_count(2)  # $a + b = 5$ and $a = 2$
    expect(mixed.locator(".math-formula").first).to_have_attribute("title", "$a + b = 5$")
    expect(mixed).to_contain_text("So $2 + $3 = $5, that is")
    page.keyboard.press("s")
    expect(mixed).to_have_text(MIXED_STEP, use_inner_text=True)


def test_bad_latex_shows_its_source(math_review, page):
    open_rollout(page, math_review, "math")
    bad = page.locator(STEP["bad"])
    expect(bad).to_have_text(MATH_STEPS["bad"], use_inner_text=True)  # rendered mode, yet all of the source
    expect(bad.locator(".math-error")).to_have_text("\\( 2 \\times \\frac{1} \\)")
    expect(bad.locator(".math-error")).to_have_attribute("title", re.compile("KaTeX parse error"))
    expect(page.locator(".katex-error")).to_have_count(0)  # KaTeX's red box in place of the source


def test_hostile_latex_runs_nothing_and_links_nowhere(math_review, page):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    open_rollout(page, math_review, "math")
    hostile = page.locator(STEP["hostile"])
    errors = hostile.locator(".math-error")
    expect(errors).to_have_count(3)  # \href, \url and \htmlClass need trust: shown as source
    expect(errors.nth(0)).to_have_text("\\(\\href{javascript:alert(1)}{click}\\)")
    expect(errors.nth(2)).to_have_text("\\(\\htmlClass{x}{y}\\)")
    expect(hostile.locator(".katex")).to_have_count(1)  # $<script>...$ typeset as letters
    expect(hostile).to_contain_text(PLANTED)
    for key in "jjjc":  # label it: the swapped-in step is typeset the same way
        page.keyboard.press(key)
    expect(page.locator("#step-3 button.mark-correct")).to_have_class(re.compile("chosen"))
    expect(errors).to_have_count(3)
    expect(hostile.locator(".katex")).to_have_count(1)

    assert page.locator("#items [href], #items [src], #items .x").count() == 0
    assert not [
        link
        for link in page.eval_on_selector_all("[href]", "(all) => all.map((e) => e.href)")
        if link.lower().startswith("javascript")
    ]
    assert page.locator("script").count() == 4  # htmx, KaTeX, math.js and review.js, from /static
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []


def test_katex_renders_under_the_strict_csp(math_review, page):
    url, _ = math_review
    csp = httpx.get(url + "/", timeout=10).headers["content-security-policy"]
    assert "style-src 'self';" in csp and "font-src 'self';" in csp and "unsafe" not in csp
    page.add_init_script(RECORD_CSP)
    open_rollout(page, math_review, "math")
    expect(page.locator(STEP["inline"]).locator(".katex")).to_have_count(1)
    loaded = page.evaluate(
        "async () => { await document.fonts.ready;"
        " return [...document.fonts].filter((f) => f.status === 'loaded').map((f) => f.family); }"
    )
    assert {"KaTeX_Main", "KaTeX_Math"} <= set(loaded)
    assert page.evaluate("window.__csp") == []


def test_every_vendored_file_is_package_data_and_served(math_review):
    """The wheel ships what the pages load: each file under static/ and templates/ matches the
    package-data globs as setuptools expands them (build_py.find_data_files: recursive glob,
    files only), and the app serves each font KaTeX's stylesheet names."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["rmforge.review"]
    shipped = {
        os.path.normpath(p) for g in globs for p in glob.glob(str(REVIEW / g), recursive=True) if os.path.isfile(p)
    }
    assets = {str(p) for folder in ("static", "templates") for p in (REVIEW / folder).rglob("*") if p.is_file()}
    assert (REVIEW / "static" / "katex" / "fonts" / "KaTeX_Main-Regular.woff2").is_file()
    assert (REVIEW / "static" / "katex" / "LICENSE").is_file()
    assert sorted(assets - shipped) == []

    url, _ = math_review
    css = (REVIEW / "static" / "katex" / "katex.min.css").read_text()
    # Browsers take the first format they read, woff2 (every browser htmx 2 runs in): only those ship.
    fonts = re.findall(r"url\((fonts/[\w-]+\.woff2)\)", css)
    assert len(fonts) == 20
    for path in ["katex.min.css", "katex.min.js", *fonts]:
        assert httpx.get(f"{url}/static/katex/{path}", timeout=10).status_code == 200, path
