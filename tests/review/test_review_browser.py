"""The real `rmforge review` process driven in headless Chromium, keyboard first."""

from __future__ import annotations

import re

import pytest

from rmforge.review.queries import save_verdict
from rmforge.store import Store
from tests.review.conftest import ROOT, sql_json
from tests.review.store_builder import PLANTED

pytestmark = pytest.mark.slow  # `rmforge review` in a process, driven in Chromium

expect = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra").expect
expect.set_options(timeout=15_000)  # a shared 2-core machine can be slow; a bug stays a failure
SCREENSHOT = ROOT / "build" / "review.png"  # docs/review.png is a copy of it


def test_label_a_disagreement_with_the_keyboard(review_store, review_server, page):
    db, ids = review_store
    page.goto(review_server + "/")
    expect(page.locator("#reviewer")).to_have_text("alice")
    rows = page.locator("table.queue tbody tr")
    expect(rows).to_have_count(6)
    expect(rows.nth(0)).to_have_class("disagreement")
    expect(rows.nth(1)).to_have_class("refute_flag")

    rows.nth(0).locator("a.why").click()
    expect(page).to_have_url(re.compile(f"id={ids['disagree']}"))
    page.wait_for_load_state()
    step0, step1, step2 = (page.locator(f"#step-{i}") for i in range(3))
    expect(step1).to_have_class(re.compile("disputed"))
    expect(step1.locator(".consensus")).to_contain_text("disagreement")
    expect(step1.locator(".verdicts")).to_contain_text("7 - 2 = 4 is false")
    expect(page.locator(".critiques")).to_contain_text("first error at step 2")
    expect(step0).to_have_class(re.compile("current"))

    page.keyboard.press("c")  # step 1 correct, the cursor moves on
    page.keyboard.press("i")  # step 2 incorrect
    expect(step0.locator("button.mark-correct")).to_have_class(re.compile("chosen"))
    expect(step1.locator("button.mark-incorrect")).to_have_class(re.compile("chosen"))
    expect(step2).to_have_class(re.compile("current"))
    page.keyboard.press("k")
    expect(step1).to_have_class(re.compile("current"))
    expect(step2).not_to_have_class(re.compile("current"))

    page.reload()
    expect(step0.locator("button.mark-correct")).to_have_class(re.compile("chosen"))
    expect(step1.locator("button.mark-incorrect")).to_have_class(re.compile("chosen"))
    expect(step1.locator(".humans")).to_contain_text("alice: incorrect")
    expect(step2.locator("button.chosen")).to_have_count(0)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000

    labels = sql_json(
        db,
        "SELECT step_index, verdict, model, reason FROM step_labels "
        f"WHERE annotator = 'human' AND rollout_id = '{ids['disagree']}' ORDER BY step_index",
    )
    assert labels == [
        {"step_index": 0, "verdict": "correct", "model": "alice", "reason": None},
        {"step_index": 1, "verdict": "incorrect", "model": "alice", "reason": None},
    ]

    page.keyboard.press("n")
    expect(page).to_have_url(re.compile(f"id={ids['flagged']}"))


def test_the_cursor_stays_where_the_keys_moved_it_while_a_label_is_saved(review_store, review_server, page):
    """A reviewer is faster than the server: `k` pressed before the saved item comes back. htmx
    settles the re-rendered item's classes after the swap, which must not take the cursor away."""
    import time

    _, ids = review_store

    def slow_save(route):
        time.sleep(0.5)
        route.continue_()

    page.route("**/label", slow_save)
    page.goto(f"{review_server}/rollout?id={ids['disagree']}")
    step0, step1 = page.locator("#step-0"), page.locator("#step-1")
    expect(step0).to_have_class(re.compile("current"))
    page.keyboard.press("i")  # step 1 incorrect: saved slowly, the cursor moves to step 2
    page.keyboard.press("k")  # back to step 1 before the server answers
    expect(step0.locator("button.mark-incorrect")).to_have_class(re.compile("chosen"))
    expect(step0.locator(".humans")).to_contain_text("alice: incorrect")  # the saved item is back
    page.wait_for_timeout(200)  # past htmx's settle delay (20 ms)
    expect(step0).to_have_class(re.compile("current"))
    expect(step1).not_to_have_class(re.compile("current"))


def test_final_answer_unsure_and_two_reviewers(review_store, review_server, page):
    db, ids = review_store
    page.goto(f"{review_server}/rollout?id={ids['flagged']}")
    outcome = page.locator("#outcome")
    for _ in range(3):
        page.keyboard.press("j")
    expect(outcome).to_have_class(re.compile("current"))
    page.keyboard.press("u")
    expect(outcome.locator("button.mark-unknown")).to_have_class(re.compile("chosen"))
    page.locator("#step-0 button.mark-incorrect").click()
    expect(page.locator("#step-0 button.mark-incorrect")).to_have_class(re.compile("chosen"))

    # A second reviewer labels the same step; the app holds no connection between requests.
    with Store(db) as store:
        save_verdict(store, ids["flagged"], "step", "correct", "bob", "test-review", step_index=0)
    page.reload()
    humans = page.locator("#step-0 .humans")
    expect(humans).to_contain_text("alice: incorrect")
    expect(humans).to_contain_text("bob: correct")
    expect(humans).to_contain_text("reviewers disagree")

    outcome_labels = sql_json(
        db,
        "SELECT verdict, reason, model FROM outcome_labels "
        f"WHERE annotator = 'human' AND rollout_id = '{ids['flagged']}'",
    )
    assert outcome_labels == [{"verdict": "unknown", "reason": "reviewer unsure", "model": "alice"}]


def test_planted_html_is_shown_as_text_and_never_runs(review_store, review_server, page):
    _, ids = review_store
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(review_server + "/")
    expect(page.locator("table.queue")).to_contain_text("<script>window.__pwned = 1; alert(1)</script>")
    page.goto(f"{review_server}/rollout?id={ids['hostile']}")
    expect(page.locator(".question")).to_contain_text(PLANTED)  # the response's question
    expect(page.locator("#step-0 .text")).to_contain_text(PLANTED)  # a step of the response
    expect(page.locator("#step-0 .verdicts")).to_contain_text("fine " + PLANTED)  # a judge's reason
    page.keyboard.press("c")  # the swapped-in item is escaped too
    expect(page.locator("#step-0 button.mark-correct")).to_have_class(re.compile("chosen"))
    expect(page.locator("#step-0 .text")).to_contain_text(PLANTED)
    page.locator(".critiques summary").click()
    expect(page.locator(".critiques .text")).to_contain_text(PLANTED)

    assert page.evaluate("window.__pwned") is None
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 4  # htmx, KaTeX, math.js and review.js, from /static
    assert dialogs == []


def test_figures_page_and_view(review_store, review_server, page):
    db, ids = review_store
    with Store(db) as store:
        save_verdict(store, ids["disagree"], "step", "incorrect", "carol", "test-review", step_index=1)
    page.goto(review_server + "/figures")
    rows = page.locator("table.figures tbody tr")
    expect(rows.first).to_be_visible()
    z3 = page.locator("table.figures tr", has_text="z3_arith").first
    expect(z3).to_contain_text("step")
    view = {(r["level"], r["annotator"]): r for r in sql_json(db, "SELECT * FROM annotator_agreement")}
    assert ("step", "z3_arith") in view and view[("step", "z3_arith")]["n"] >= 1
