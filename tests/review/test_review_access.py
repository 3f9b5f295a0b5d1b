"""Who may use `rmforge review`: on loopback, pages of this machine's own names only; off
loopback, only a browser that opened the printed link (a token, then a cookie); and never a
page of another site."""

from __future__ import annotations

import re
import threading

import httpx
import pytest

from tests.cross_origin import FOREIGN_HOST_HEADERS, FOREIGN_ORIGIN_HEADERS, fetch_from, foreign_site
from tests.review.conftest import sql_json, start_review
from tests.review.store_builder import build_review_store

pytestmark = pytest.mark.slow  # `rmforge review` processes

ACCESS_COOKIE = "rmforge_review_access"


def human_labels(db: str, rollout_id: str) -> list[dict]:
    return sql_json(db, f"SELECT step_index FROM step_labels WHERE annotator = 'human' AND rollout_id = '{rollout_id}'")


def label_form(rollout_id: str) -> dict[str, str]:
    return {"rollout_id": rollout_id, "target": "step", "verdict": "incorrect", "step": "0"}


@pytest.fixture(scope="module")
def open_review(tmp_path_factory):
    """`rmforge review --host 0.0.0.0` (reached here on 127.0.0.1): its URL, token, printed
    lines, store and rollout ids."""
    db = str(tmp_path_factory.mktemp("open_review") / "review.duckdb")
    ids = build_review_store(db)
    process, url = start_review(db, review_args=("--host", "0.0.0.0"))
    printed: list[str] = []

    def read_until_the_link() -> None:
        while not any("?token=" in line for line in printed) and (line := process.stdout.readline()):
            printed.append(line)

    reader = threading.Thread(target=read_until_the_link, daemon=True)
    reader.start()
    reader.join(timeout=30)  # a command that prints no token link must fail this, not hang it
    if not any("?token=" in line for line in printed):
        process.kill()
        pytest.fail(f"no link with a token was printed: {printed}")
    token = re.search(r"\?token=([\w-]+)", "".join(printed)).group(1)
    yield {"url": url, "token": token, "printed": printed, "db": db, "ids": ids}
    process.terminate()
    process.wait(timeout=10)


def test_off_loopback_the_command_warns_and_prints_a_link_with_a_token(open_review):
    port = httpx.URL(open_review["url"]).port
    printed = "".join(open_review["printed"])
    assert f"http://0.0.0.0:{port}/?token={open_review['token']}" in printed
    assert "other machines" in printed
    assert len(open_review["token"]) >= 32


@pytest.mark.parametrize("path", ["/", "/figures", "/static/review.css", "/?token=wrong"])
def test_off_loopback_a_request_without_the_token_is_refused(open_review, path):
    assert httpx.get(open_review["url"] + path, timeout=10).status_code == 401
    with_wrong_cookie = httpx.get(open_review["url"] + path, cookies={ACCESS_COOKIE: "wrong"}, timeout=10)
    assert with_wrong_cookie.status_code == 401


def test_off_loopback_a_label_without_the_token_is_not_saved(open_review):
    rollout_id = open_review["ids"]["flagged"]
    refused = httpx.post(
        open_review["url"] + "/label", data=label_form(rollout_id), headers={"HX-Request": "true"}, timeout=10
    )
    assert refused.status_code == 401
    assert human_labels(open_review["db"], rollout_id) == []


def test_the_token_link_sets_a_cookie_that_then_suffices(open_review):
    url, token = open_review["url"], open_review["token"]
    with httpx.Client(base_url=url, timeout=10) as browser_like:
        entered = browser_like.get(f"/figures?token={token}")
        assert entered.status_code == 303 and entered.headers["location"] == "/figures"  # the token leaves the URL
        cookie = entered.headers["set-cookie"].lower()
        assert f"{ACCESS_COOKIE}=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        assert browser_like.get("/figures").status_code == 200  # the cookie alone
    with httpx.Client(base_url=url, timeout=10, cookies={ACCESS_COOKIE: token}) as cookie_only:
        assert cookie_only.get("/").status_code == 200
        rollout_id = open_review["ids"]["flagged"]
        saved = cookie_only.post("/label", data=label_form(rollout_id), headers={"HX-Request": "true"})
        assert saved.status_code == 200 and human_labels(open_review["db"], rollout_id) == [{"step_index": 0}]


def test_on_loopback_no_token_is_needed_but_the_host_is_checked(review_server):
    assert httpx.get(review_server + "/", timeout=10).status_code == 200
    assert httpx.get(review_server + "/", headers=FOREIGN_HOST_HEADERS, timeout=10).status_code == 400


def test_a_label_from_another_origin_is_refused(review_store, review_server):
    db, ids = review_store
    refused = httpx.post(
        review_server + "/label",
        data=label_form(ids["plain-2"]),
        headers={"HX-Request": "true", **FOREIGN_ORIGIN_HEADERS},
        timeout=10,
    )
    assert refused.status_code == 403
    assert human_labels(db, ids["plain-2"]) == []


def test_a_page_of_another_site_can_neither_read_nor_label(review_store, review_server, open_review, page):
    db, ids = review_store
    with foreign_site() as foreign_url:
        page.goto(foreign_url)
        for url, rollout_id, store in (
            (review_server, ids["plain-2"], db),
            (open_review["url"], open_review["ids"]["plain-2"], open_review["db"]),
        ):
            assert fetch_from(page, url + "/", {"credentials": "include"}) == "blocked"
            assert (
                fetch_from(
                    page,
                    url + "/label",
                    {
                        "method": "POST",
                        "credentials": "include",
                        "headers": {"HX-Request": "true"},
                        "body": f"rollout_id={rollout_id}&target=step&verdict=incorrect&step=0",
                    },
                )
                == "blocked"
            )
            fetch_from(
                page,
                url + "/label",
                {  # no-cors: sent without asking; the server must refuse it
                    "method": "POST",
                    "mode": "no-cors",
                    "credentials": "include",
                    "body": f"rollout_id={rollout_id}&target=step&verdict=incorrect&step=0",
                },
            )
            assert human_labels(store, rollout_id) == []
