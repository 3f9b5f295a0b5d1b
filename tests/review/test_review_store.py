"""The review queue, saving human verdicts, the agreement view and the app's guards (no browser)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rmforge.review.app import create_app
from rmforge.review.queries import (
    QueueFilters,
    ReviewError,
    agreement_figures,
    next_in_queue,
    review_queue,
    rollout_review,
    save_verdict,
)
from rmforge.store import Store
from tests.review.conftest import rmforge
from tests.review.store_builder import build_review_store, outcome_label, step_label


@pytest.fixture()
def built(db):
    ids = build_review_store(db)
    with Store(db) as store:
        yield store, ids


def queue_ids(store, filters=None, reviewer="alice"):
    rows, total = review_queue(store, filters or QueueFilters(), reviewer)
    assert total == len(rows)
    return [row["rollout_id"] for row in rows]


def test_queue_puts_disagreements_first_then_refute_flags_then_stable_spot_checks(built):
    store, ids = built
    rows, total = review_queue(store, QueueFilters(), "alice")
    assert total == 6
    assert [r["priority"] for r in rows] == ["disagreement", "refute_flag"] + ["spot_check"] * 4
    assert [r["rollout_id"] for r in rows[:2]] == [ids["disagree"], ids["flagged"]]
    spot = [ids[name] for name in ("hostile", "plain-0", "plain-1", "plain-2")]
    assert [r["rollout_id"] for r in rows[2:]] == sorted(spot, key=lambda i: hashlib.md5(i.encode()).hexdigest())
    assert review_queue(store, QueueFilters(), "alice", limit=2, offset=2)[0] == rows[2:4]


def test_queue_filters(built):
    store, ids = built
    pens = {ids["disagree"], ids["plain-0"], ids["plain-2"]}
    problem_id = store.rows("SELECT problem_id FROM rollouts WHERE rollout_id = ?", [ids["disagree"]])[0]["problem_id"]
    assert set(queue_ids(store, QueueFilters(problem=problem_id))) == pens
    assert set(queue_ids(store, QueueFilters(problem="BAKER"))) == {ids["flagged"], ids["plain-1"]}
    assert queue_ids(store, QueueFilters(model="other")) == []
    assert len(queue_ids(store, QueueFilters(model="test"))) == 6
    assert set(queue_ids(store, QueueFilters(annotator="judge"))) == {ids["disagree"], ids["hostile"]}
    flagged_by_z3 = QueueFilters(annotator="z3_arith", verdict="incorrect")
    assert queue_ids(store, flagged_by_z3) == [ids["disagree"], ids["flagged"]]
    # an outcome verdict counts too: only `disagree` has an incorrect final answer
    assert queue_ids(store, QueueFilters(annotator="answer", verdict="incorrect")) == [ids["disagree"]]

    save_verdict(store, ids["disagree"], "step", "correct", "alice", "r", step_index=0)
    assert ids["disagree"] not in queue_ids(store, QueueFilters(pending=True))
    assert ids["disagree"] in queue_ids(store, QueueFilters(pending=True), reviewer="bob")


def test_next_in_queue_follows_the_order_and_the_filters(built):
    store, ids = built
    order = queue_ids(store)
    assert next_in_queue(store, order[0], QueueFilters(), "alice") == order[1]
    assert next_in_queue(store, order[-1], QueueFilters(), "alice") is None
    judged = QueueFilters(annotator="judge")
    # `flagged` is not in the filtered queue; what follows it there still is
    assert next_in_queue(store, ids["flagged"], judged, "alice") == ids["hostile"]
    with pytest.raises(ReviewError, match="not in the store"):
        next_in_queue(store, "missing", QueueFilters(), "alice")


def test_human_verdicts_are_labels_of_their_reviewer_and_nothing_else_changes(built):
    store, ids = built
    d = ids["disagree"]
    before = store.counts()
    machine = store.rows("SELECT * FROM step_labels WHERE annotator <> 'human' ORDER BY ALL")
    save_verdict(store, d, "step", "correct", "alice", "r1", step_index=1)
    save_verdict(store, d, "step", "incorrect", "alice", "r1", step_index=1)  # she changes her mind
    save_verdict(store, d, "step", "incorrect", "bob", "r2", step_index=1)
    save_verdict(store, d, "outcome", "unknown", "bob", "r2")
    humans = store.rows(
        "SELECT model, verdict, reason, run_id FROM step_labels WHERE annotator = 'human' ORDER BY model"
    )
    assert humans == [
        {"model": "alice", "verdict": "incorrect", "reason": None, "run_id": "r1"},
        {"model": "bob", "verdict": "incorrect", "reason": None, "run_id": "r2"},
    ]
    assert store.rows("SELECT model, verdict, reason FROM outcome_labels WHERE annotator = 'human'") == [
        {"model": "bob", "verdict": "unknown", "reason": "reviewer unsure"}
    ]
    after = store.counts()
    assert after.pop("step_labels") == before.pop("step_labels") + 2
    assert after.pop("outcome_labels") == before.pop("outcome_labels") + 1
    assert after == before
    assert store.rows("SELECT * FROM step_labels WHERE annotator <> 'human' ORDER BY ALL") == machine

    view = rollout_review(store, d, "alice")
    step = view["steps"][1]
    assert step["mine"] == "incorrect" and step["reviewers_agree"] is True
    assert {label["annotator"] for label in step["labels"]} == {"judge", "mc", "z3_arith"}
    assert step["consensus"]["votes"] == {"judge": "incorrect", "mc": "correct", "z3_arith": "incorrect"}
    assert view["outcome"]["mine"] is None and rollout_review(store, d, "bob")["outcome"]["mine"] == "unknown"
    assert view["curated_at"].isoformat().startswith("2026-11-28T17:30")

    with pytest.raises(ReviewError, match="has no step 3"):
        save_verdict(store, d, "step", "correct", "alice", "r1", step_index=3)
    with pytest.raises(ReviewError, match="not in the store"):
        save_verdict(store, "missing", "outcome", "correct", "alice", "r1")


def test_agreement_view_counts_only_steps_reviewers_settled(db):
    """The ten steps of the hand-computed table below, plus: a step two reviewers both call
    incorrect (mc agrees), one where mc abstains, one the reviewers disagree on and one a
    reviewer was unsure of (both left out); and two final answers."""
    human = ["correct"] * 6 + ["incorrect"] * 4
    mc = ["correct"] * 5 + ["incorrect"] * 4 + ["correct"]
    labels = []
    for i, (h, m) in enumerate(zip(human, mc)):
        labels += [step_label("r", i, "human", h, model="alice"), step_label("r", i, "mc", m)]
    labels.append(step_label("r2", 0, "human", "incorrect", model="alice"))
    labels.append(step_label("r2", 0, "mc", "incorrect"))
    labels += [step_label("r", 10, "human", "correct", model="alice"), step_label("r", 10, "mc", "unknown")]
    labels += [
        step_label("r", 11, "mc", "correct"),
        step_label("r", 12, "mc", "correct"),
        step_label("r", 12, "human", "unknown", model="alice"),
    ]
    bob = [
        step_label("r2", 0, "human", "incorrect", model="bob"),
        step_label("r", 11, "human", "incorrect", model="bob"),
    ]
    alice_11 = step_label("r", 11, "human", "correct", model="alice")
    for label in bob:
        label.config_hash = "human-bob"
    outcomes = [
        outcome_label("r", "answer", "correct"),
        outcome_label("r2", "answer", "correct"),
        outcome_label("r", "human", "correct"),
        outcome_label("r2", "human", "incorrect"),
    ]
    with Store(db) as store:
        store.write("step_labels", labels + bob + [alice_11])
        store.write("outcome_labels", outcomes)
        rows = {row["level"]: row for row in store.rows("SELECT * FROM annotator_agreement")}
        figures = agreement_figures(store)
    step = rows["step"]
    assert step["annotator"] == "mc" and step["n"] == 11 and step["unknown"] == 1
    # the table below plus r2/0 (both incorrect): 6 correct / 5 incorrect by the humans
    assert (step["both_correct"], step["false_incorrect"], step["false_correct"], step["both_incorrect"]) == (
        5,
        1,
        1,
        4,
    )
    assert step["accuracy"] == pytest.approx(9 / 11)
    chance = (5 * 5 + 6 * 6) / 121
    assert step["kappa"] == pytest.approx((9 / 11 - chance) / (1 - chance))
    assert step["precision_incorrect"] == pytest.approx(4 / 5) and step["recall_incorrect"] == pytest.approx(4 / 5)
    outcome = rows["outcome"]
    assert (outcome["annotator"], outcome["n"], outcome["accuracy"], outcome["kappa"]) == ("answer", 2, 0.5, 0.0)
    assert outcome["precision_incorrect"] is None  # it never said incorrect
    assert figures["reviewer_overlap"] == {"steps": 2, "agreed": 1}


def test_kappa_of_a_hand_computed_table(db):
    """Ten reviewed steps, human: 6 correct, 4 incorrect; annotator mc:
                      human correct  human incorrect
        mc correct          5               1
        mc incorrect        1               3
    accuracy 8/10; chance agreement (4*4 + 6*6)/100 = 0.52; kappa (0.8 - 0.52)/0.48 = 0.58333;
    precision of incorrect 3/4."""
    human = ["correct"] * 6 + ["incorrect"] * 4
    mc = ["correct"] * 5 + ["incorrect"] * 4 + ["correct"]
    with Store(db) as store:
        store.write(
            "step_labels",
            [
                step_label("r", i, a, v, model="alice")
                for i, (h, m) in enumerate(zip(human, mc))
                for a, v in (("human", h), ("mc", m))
            ],
        )
        row = store.rows("SELECT n, accuracy, kappa, precision_incorrect FROM annotator_agreement")[0]
    assert row["n"] == 10 and row["accuracy"] == pytest.approx(0.8)
    assert row["kappa"] == pytest.approx(0.58333, abs=1e-5) and row["precision_incorrect"] == pytest.approx(0.75)


def test_app_guards_its_writes_and_its_host(db):
    ids = build_review_store(db)
    client = TestClient(create_app(db, "alice"), base_url="http://127.0.0.1:8765")
    form = {"rollout_id": ids["disagree"], "target": "step", "step": "0", "verdict": "correct"}
    assert client.post("/label", data=form).status_code == 403  # no HX-Request: a cross-site form
    assert client.get("/", headers={"host": "attacker.example"}).status_code == 400  # DNS rebinding
    page = client.get("/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    saved = client.post("/label", data=form, headers={"HX-Request": "true"})
    assert saved.status_code == 200 and "chosen" in saved.text
    bad = client.post("/label", data={**form, "verdict": "maybe"}, headers={"HX-Request": "true"})
    assert bad.status_code == 422
    assert client.get("/rollout", params={"id": "missing"}).status_code == 404


@pytest.mark.slow  # CLI subprocess
def test_cli_reviews_a_lake(lake_db, monkeypatch):
    from typer.testing import CliRunner

    from rmforge.cli import app

    ids = build_review_store(lake_db)
    served = []
    monkeypatch.setattr("rmforge.review.app.serve", lambda review_app, **where: served.append(review_app))

    result = CliRunner().invoke(app, ["review", "--db", lake_db, "--reviewer", "alice"])

    assert result.exit_code == 0, result.output
    queue = TestClient(served[0], base_url="http://127.0.0.1:8765").get("/")
    assert queue.status_code == 200 and ids["disagree"] in queue.text


@pytest.mark.slow  # CLI subprocesses
def test_cli_errors_are_one_line(tmp_path, db):
    missing = rmforge("review", "--db", str(tmp_path / "none.duckdb"))
    assert missing.returncode == 1 and missing.stderr.strip().count("\n") == 0
    assert "no rmforge database" in missing.stderr
    build_review_store(db)
    long_name = rmforge("review", "--db", db, "--reviewer", "x" * 201)
    assert long_name.returncode == 1 and "--reviewer" in long_name.stderr
    assert long_name.stderr.strip().count("\n") == 0


def test_listens_on_loopback_only_by_default(review_server):
    """The server was started without --host: its socket is bound to 127.0.0.1, not 0.0.0.0."""
    port = int(review_server.rsplit(":", 1)[1])
    listening = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, local_port = local.split(":")
        if state == "0A" and int(local_port, 16) == port:  # 0A = LISTEN
            listening.append(address)
    assert listening == ["0100007F"]  # 127.0.0.1, little-endian hex


def test_a_step_with_an_abstaining_voter_is_no_disagreement(built):
    """Consensus failed on a plain step because one voter abstained (mc `unknown`) or gave a
    verdict that is no evidence (refute-only z3_arith's `correct`): no two voters disagree."""
    store, ids = built
    store.execute(
        "UPDATE step_consensus SET agreed = false, verdict = 'unknown' WHERE rollout_id IN (?, ?) AND step_index = 0",
        [ids["plain-0"], ids["plain-1"]],
    )
    store.execute(
        "UPDATE step_labels SET verdict = 'unknown' WHERE rollout_id = ? AND step_index = 0 AND annotator = 'mc'",
        [ids["plain-0"]],
    )
    rows, _ = review_queue(store, QueueFilters(), "alice")
    priority = {row["rollout_id"]: row["priority"] for row in rows}
    assert priority[ids["disagree"]] == "disagreement"
    assert priority[ids["plain-0"]] == "spot_check" and priority[ids["plain-1"]] == "spot_check"


def test_figures_count_a_refute_only_checkers_correct_as_an_abstention(db):
    """z3_arith is refute-only: its `correct` is no evidence, as `rmforge eval` counts it."""
    human = ["correct", "correct", "incorrect", "incorrect"]
    z3 = ["correct", "incorrect", "incorrect", "correct"]
    labels = []
    for i, (h, z) in enumerate(zip(human, z3)):
        labels += [
            step_label("r", i, "human", h, model="alice"),
            step_label("r", i, "z3_arith", z),
            step_label("r", i, "mc", z),
        ]
    with Store(db) as store:
        store.write("step_labels", labels)
        rows = {row["annotator"]: row for row in agreement_figures(store)["rows"]}
    z3_row, mc_row = rows["z3_arith"], rows["mc"]
    assert (z3_row["n"], z3_row["unknown"]) == (2, 2)
    assert z3_row["accuracy"] == pytest.approx(0.5) and z3_row["precision_incorrect"] == pytest.approx(0.5)
    assert (mc_row["n"], mc_row["unknown"], mc_row["accuracy"]) == (4, 0, pytest.approx(0.5))
