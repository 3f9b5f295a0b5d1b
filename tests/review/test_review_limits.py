"""A long rollout, huge numbers in a URL, a slow page and SIGTERM: none of them hangs `rmforge review`."""

from __future__ import annotations

import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from rmforge.review import queries as review
from rmforge.review.app import create_app
from rmforge.review.queries import STEPS_PER_PAGE, rollout_review
from rmforge.store import Store
from tests.review.conftest import start_review
from tests.review.store_builder import build_long_rollout, build_review_store

SHOWN_STEP = re.compile(r'id="step-(\d+)"')
TOO_LARGE = "99999999999999999999"  # past DuckDB's BIGINT: it used to answer 500 (INT128 conversion)


def client_for(db: str) -> TestClient:
    return TestClient(create_app(db, "alice"), base_url="http://127.0.0.1:8765", raise_server_exceptions=False)


def fastest(action, repeats: int = 3) -> float:
    """The best of a few timings: the shared machine's noise only ever adds time."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return min(timings)


def shown_steps(page: httpx.Response) -> list[int]:
    assert page.status_code == 200, page.text
    return [int(index) for index in SHOWN_STEP.findall(page.text)]


@pytest.mark.slow  # times a 20,000-label rollout
def test_labels_are_grouped_by_step_in_linear_time(db):
    short, long = build_long_rollout(db, 1000, index=1), build_long_rollout(db, 8000, index=2)
    with Store(db, read_only=True) as store:
        short_time = fastest(lambda: rollout_review(store, short, "alice", step_count=1000))
        long_time = fastest(lambda: rollout_review(store, long, "alice", step_count=8000))
        view = rollout_review(store, long, "alice", step_count=8000)
    assert [len(step["labels"]) for step in view["steps"]] == [2] * 8000
    # 8x the steps: linear work takes ~8-16x (the longer page's memory costs show on a busy
    # machine); the quadratic grouping took 64x
    assert long_time < 32 * short_time, (short_time, long_time)


@pytest.mark.slow  # builds a long rollout (~3 s)
def test_a_long_rollout_page_shows_one_page_of_steps(db):
    short, long = build_long_rollout(db, 2000, index=1), build_long_rollout(db, 8000, index=2)
    client = client_for(db)
    short_time = fastest(lambda: client.get("/rollout", params={"id": short}))
    long_time = fastest(lambda: client.get("/rollout", params={"id": long}))
    assert shown_steps(client.get("/rollout", params={"id": long})) == list(range(STEPS_PER_PAGE))
    # 4x the steps, the same page: rendering every step took 4x and more; 3x leaves room for a busy machine
    assert long_time < 3 * short_time, (short_time, long_time)


def test_paging_through_a_long_rollout(db):
    rollout_id = build_long_rollout(db, 2 * STEPS_PER_PAGE + 50)
    client = client_for(db)
    first = client.get("/rollout", params={"id": rollout_id, "model": "m"})
    assert shown_steps(first) == list(range(STEPS_PER_PAGE))
    assert f"steps 1–{STEPS_PER_PAGE} of {2 * STEPS_PER_PAGE + 50}" in first.text
    assert 'id="outcome"' in first.text  # the final answer can be labelled from any page
    later = re.search(r'<a href="([^"]+)" class="later-steps"', first.text).group(1)
    assert f"step_offset={STEPS_PER_PAGE}" in later.replace("&amp;", "&") and "model=m" in later
    assert 'class="earlier-steps"' not in first.text

    middle = client.get("/rollout", params={"id": rollout_id, "step_offset": STEPS_PER_PAGE})
    assert shown_steps(middle) == list(range(STEPS_PER_PAGE, 2 * STEPS_PER_PAGE))
    assert 'class="earlier-steps"' in middle.text and 'class="later-steps"' in middle.text

    last = client.get("/rollout", params={"id": rollout_id, "step_offset": 2 * STEPS_PER_PAGE})
    assert shown_steps(last) == list(range(2 * STEPS_PER_PAGE, 2 * STEPS_PER_PAGE + 50))
    assert 'class="later-steps"' not in last.text


def test_a_label_saved_on_a_later_page_comes_back_alone(db):
    rollout_id = build_long_rollout(db, 2 * STEPS_PER_PAGE)
    client = client_for(db)
    form = {"rollout_id": rollout_id, "target": "step", "step": str(STEPS_PER_PAGE + 7), "verdict": "incorrect"}
    saved = client.post("/label", data=form, headers={"HX-Request": "true"})
    assert shown_steps(saved) == [STEPS_PER_PAGE + 7] and "chosen" in saved.text


@pytest.mark.parametrize(
    "path, params",
    [
        ("/", {"page": TOO_LARGE}),
        ("/", {"page": str(2**31)}),
        ("/", {"page": "0"}),
        ("/rollout", {"step_offset": TOO_LARGE}),
        ("/rollout", {"step_offset": "-1"}),
    ],
)
def test_numbers_out_of_range_are_refused(db, path, params):
    ids = build_review_store(db)
    answer = client_for(db).get(path, params={"id": ids["disagree"], **params})
    assert answer.status_code == 422, answer.text


def test_a_step_number_out_of_range_is_refused(db):
    ids = build_review_store(db)
    form = {"rollout_id": ids["disagree"], "target": "step", "step": TOO_LARGE, "verdict": "correct"}
    assert client_for(db).post("/label", data=form, headers={"HX-Request": "true"}).status_code == 422


def test_a_slow_page_does_not_hold_up_the_others(db, monkeypatch):
    ids = build_review_store(db)
    entered, release = threading.Event(), threading.Event()
    figures = review.agreement_figures

    def slow_figures(store):
        entered.set()
        release.wait(60)
        return figures(store)

    monkeypatch.setattr(review, "agreement_figures", slow_figures)
    client = client_for(db)
    with ThreadPoolExecutor(2) as pool:
        try:
            slow = pool.submit(client.get, "/figures")
            assert entered.wait(30)
            other = pool.submit(client.get, "/rollout", params={"id": ids["disagree"]})
            assert other.result(timeout=20).status_code == 200
        finally:
            release.set()
        assert slow.result(timeout=30).status_code == 200


@pytest.mark.slow  # `rmforge review` in a process
def test_sigterm_stops_the_server_while_a_slow_page_is_in_flight(db):
    build_review_store(db)
    # The figures page of this server runs a query of hours; everything else is the real CLI.
    slow_cli = (
        "from rmforge.review import queries; queries.agreement_figures = lambda store:"
        " store.execute('SELECT sum(hash(i)) FROM range(10000000000000) t(i)');"
        " from rmforge.cli import app; app()"
    )
    process, url = start_review(db, "-c", slow_cli)
    try:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(httpx.get, url + "/figures", timeout=90)
            time.sleep(1)  # the request reaches the page
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            process.wait(timeout=15)
            assert time.monotonic() - started < 8
    finally:
        process.kill()
