"""Data access for `rmforge review`: the review queue, one rollout with every label, and
saving a reviewer's verdicts as `human` labels.

Plain functions over a `Store` (the web app opens one per request). The only rows written
here are `human` step and outcome labels.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

from rmforge.annotators import annotator_class
from rmforge.annotators.base import AnnotationInput, Evidence
from rmforge.annotators.human import HumanAnnotator
from rmforge.schemas.records import OutcomeLabel, Problem, Rollout, StepLabel, Verdict
from rmforge.schemas.tables import VIEWS
from rmforge.store import Store

# Why a rollout is in the queue, in review order.
PRIORITIES: tuple[str, ...] = ("disagreement", "refute_flag", "spot_check")
UNSURE_REASON = "reviewer unsure"
# Steps on one review page: a rollout of 100,000 steps must not cost a page 100,000 steps.
STEPS_PER_PAGE = 200
ReviewTarget = Literal["step", "outcome"]


class ReviewError(ValueError):
    """A review request names something the store does not have."""


@dataclass(frozen=True)
class QueueFilters:
    """Empty fields do not filter. `annotator` and `verdict` together mean "this annotator
    gave this verdict" (on a step or the final answer); `pending` hides rollouts the
    reviewer has already labelled."""

    problem: str = ""
    model: str = ""
    annotator: str = ""
    verdict: str = ""
    pending: bool = False

    def query(self) -> dict[str, str]:
        """The non-empty filters, for links that keep them."""
        return {f.name: ("1" if value is True else value) for f in fields(self) if (value := getattr(self, f.name))}


def reviewer_annotator(reviewer: str) -> HumanAnnotator:
    return HumanAnnotator({"reviewer": reviewer})


def _step_evidence(store: Store) -> dict[str, Evidence]:
    """The evidence of each annotator with step labels in the store that this checkout can load."""
    evidence = {}
    for row in store.rows("SELECT DISTINCT annotator FROM step_labels"):
        try:
            evidence[row["annotator"]] = annotator_class(row["annotator"]).evidence
        except (ValueError, ImportError):  # labels from an annotator this checkout cannot load
            continue
    return evidence


def refute_only_annotators(store: Store) -> list[str]:
    """Annotators in the store whose `incorrect` is evidence but whose `correct` is not."""
    return sorted(name for name, e in _step_evidence(store).items() if e.refute_only)


def evidence_annotators(store: Store) -> tuple[list[str], list[str]]:
    """(annotators whose step `correct` is evidence, those whose `incorrect` is), by
    `Evidence.counts`: any other verdict of theirs is an abstention."""
    evidence = _step_evidence(store)
    return (
        sorted(n for n, e in evidence.items() if e.counts("correct")),
        sorted(n for n, e in evidence.items() if e.counts("incorrect")),
    )


def _queue_cte(store: Store, reviewer: str) -> tuple[str, list[Any]]:
    """`WITH ... queue AS (...)`: every rollout with its review priority (an index into
    PRIORITIES), a stable pseudo-random order key, and whether this reviewer labelled it."""
    refute_only = refute_only_annotators(store)
    confirming, refuting = evidence_annotators(store)
    # A disagreement: consensus failed on a step where two of its voters gave verdicts that are
    # evidence and differ. A voter that abstained (`unknown`, or a refute-only checker's
    # `correct`) fails consensus without anyone disagreeing.
    sql = """
WITH disagreements AS (
    SELECT DISTINCT c.rollout_id
    FROM step_consensus c
    JOIN step_labels yes ON yes.rollout_id = c.rollout_id AND yes.step_index = c.step_index
    JOIN step_labels no ON no.rollout_id = c.rollout_id AND no.step_index = c.step_index
    WHERE NOT c.agreed
      AND list_contains(c.annotators, yes.annotator) AND list_contains(?, yes.annotator) AND yes.verdict = 'correct'
      AND list_contains(c.annotators, no.annotator) AND list_contains(?, no.annotator) AND no.verdict = 'incorrect'
), refute_flags AS (
    SELECT DISTINCT flag.rollout_id
    FROM step_labels flag JOIN step_labels other
      ON other.rollout_id = flag.rollout_id AND other.step_index = flag.step_index
    WHERE list_contains(?, flag.annotator) AND flag.verdict = 'incorrect'
      AND NOT list_contains(?, other.annotator) AND other.verdict = 'correct'
), mine AS (
    SELECT DISTINCT rollout_id FROM step_labels WHERE annotator = 'human' AND config_hash = ?
), queue AS (
    SELECT r.rollout_id, r.problem_id, r.model, p.question,
           CASE WHEN d.rollout_id IS NOT NULL THEN 0 WHEN f.rollout_id IS NOT NULL THEN 1 ELSE 2 END
               AS priority,
           md5(r.rollout_id) AS order_key,
           m.rollout_id IS NOT NULL AS reviewed
    FROM rollouts r JOIN problems p USING (problem_id)
    LEFT JOIN disagreements d USING (rollout_id)
    LEFT JOIN refute_flags f USING (rollout_id)
    LEFT JOIN mine m USING (rollout_id)
)"""
    return sql, [confirming, refuting, refute_only, refute_only, reviewer_annotator(reviewer).config_hash]


def _filter_sql(filters: QueueFilters) -> tuple[str, list[Any]]:
    """A condition on `queue r` for the filters (TRUE when there are none)."""
    where, params = ["TRUE"], []
    if filters.problem:
        where.append("(r.problem_id = ? OR r.question ILIKE '%' || ? || '%')")
        params += [filters.problem, filters.problem]
    if filters.model:
        where.append("r.model = ?")
        params.append(filters.model)
    if filters.annotator or filters.verdict:
        label_match = "l.rollout_id = r.rollout_id AND (? = '' OR l.annotator = ?) AND (? = '' OR l.verdict = ?)"
        where.append(
            f"(EXISTS (SELECT 1 FROM step_labels l WHERE {label_match})"
            f" OR EXISTS (SELECT 1 FROM outcome_labels l WHERE {label_match}))"
        )
        params += [filters.annotator, filters.annotator, filters.verdict, filters.verdict] * 2
    if filters.pending:
        where.append("NOT r.reviewed")
    return " AND ".join(where), params


def review_queue(
    store: Store, filters: QueueFilters, reviewer: str, *, limit: int = 50, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """One page of the queue (disagreements first) and the number of rollouts it holds."""
    queue, queue_params = _queue_cte(store, reviewer)
    where, where_params = _filter_sql(filters)
    rows = store.rows(
        f"""{queue}
SELECT page.*, (SELECT count(*) FROM steps s WHERE s.rollout_id = page.rollout_id) AS steps
FROM (SELECT *, count(*) OVER () AS total FROM queue r WHERE {where}
      ORDER BY priority, order_key LIMIT ? OFFSET ?) page
ORDER BY priority, order_key""",
        queue_params + where_params + [limit, offset],
    )
    total = rows[0]["total"] if rows else 0
    for row in rows:
        row["priority"] = PRIORITIES[row["priority"]]
    return rows, total


def next_in_queue(store: Store, rollout_id: str, filters: QueueFilters, reviewer: str) -> str | None:
    """The rollout after this one in queue order (this one need not match the filters)."""
    if not store.rows("SELECT 1 FROM rollouts WHERE rollout_id = ?", [rollout_id]):
        raise ReviewError(f"rollout {rollout_id!r} is not in the store")
    queue, queue_params = _queue_cte(store, reviewer)
    where, where_params = _filter_sql(filters)
    after = store.rows(
        f"""{queue}, here AS (SELECT priority, order_key FROM queue WHERE rollout_id = ?)
SELECT r.rollout_id FROM queue r, here
WHERE {where} AND (r.priority > here.priority OR (r.priority = here.priority AND r.order_key > here.order_key))
ORDER BY r.priority, r.order_key LIMIT 1""",
        queue_params + [rollout_id] + where_params,
    )
    return after[0]["rollout_id"] if after else None


def filter_choices(store: Store) -> dict[str, list[str]]:
    """Values offered by the queue's filter menus."""
    return {
        "model": [r["model"] for r in store.rows("SELECT DISTINCT model FROM rollouts ORDER BY model")],
        "annotator": [
            r["annotator"]
            for r in store.rows(
                "SELECT annotator FROM step_labels UNION SELECT annotator FROM outcome_labels ORDER BY 1"
            )
        ],
    }


def _votes(text: str | None) -> dict[str, str] | str:
    try:
        votes = json.loads(text or "{}")
    except json.JSONDecodeError:
        return text or ""
    return votes if isinstance(votes, dict) else str(votes)


def _human_agreement(humans: list[dict[str, Any]]) -> bool | None:
    """Whether two or more reviewers gave the same decisive verdict (None: fewer than two)."""
    decisive = {h["verdict"] for h in humans if h["verdict"] != "unknown"}
    if sum(h["verdict"] != "unknown" for h in humans) < 2:
        return None
    return len(decisive) == 1


def rollout_review(
    store: Store, rollout_id: str, reviewer: str, *, first_step: int = 0, step_count: int = STEPS_PER_PAGE
) -> dict[str, Any]:
    """What the review page shows for one rollout: its steps `first_step` to
    `first_step + step_count - 1` with their labels, the final answer, the critiques, and
    how many steps it has (a page of a long rollout costs what its shown steps cost)."""
    found = store.rows(
        "SELECT r.*, p.question, p.gold_answer, p.source,"
        " (SELECT count(*) FROM steps s WHERE s.rollout_id = r.rollout_id) AS step_total"
        " FROM rollouts r JOIN problems p USING (problem_id) WHERE r.rollout_id = ?",
        [rollout_id],
    )
    if not found:
        raise ReviewError(f"rollout {rollout_id!r} is not in the store")
    me = reviewer_annotator(reviewer).config_hash
    shown = "rollout_id = ? AND step_index >= ? AND step_index < ?"
    window = [rollout_id, first_step, first_step + step_count]
    steps = store.rows(f"SELECT step_index, text FROM steps WHERE {shown} ORDER BY step_index", window)
    labels_by_step: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for label in store.rows(f"SELECT * FROM step_labels WHERE {shown} ORDER BY annotator, model, config_hash", window):
        labels_by_step[label["step_index"]].append(label)
    consensus = {
        row["step_index"]: {**row, "votes": _votes(row["votes"])}
        for row in store.rows(f"SELECT * FROM step_consensus WHERE {shown}", window)
    }
    curated = store.rows(
        "SELECT max(coalesce(finished_at, started_at)) AS at FROM runs"
        " WHERE run_id IN (SELECT run_id FROM step_consensus WHERE rollout_id = ?)",
        [rollout_id],
    )
    outcomes = store.rows(
        "SELECT * FROM outcome_labels WHERE rollout_id = ? ORDER BY annotator, model, config_hash", [rollout_id]
    )
    critiques = store.rows(
        "SELECT * FROM critiques WHERE rollout_id = ? ORDER BY annotator, model, sample_index", [rollout_id]
    )

    def split(rows: list[dict[str, Any]]) -> dict[str, Any]:
        humans = [r for r in rows if r["annotator"] == "human"]
        mine = next((r["verdict"] for r in humans if r["config_hash"] == me), None)
        return {
            "labels": [r for r in rows if r["annotator"] != "human"],
            "humans": humans,
            "mine": mine,
            "reviewers_agree": _human_agreement(humans),
        }

    return {
        "rollout": found[0],
        "steps": [
            {
                "index": step["step_index"],
                "text": step["text"],
                "consensus": consensus.get(step["step_index"]),
                **split(labels_by_step[step["step_index"]]),
            }
            for step in steps
        ],
        "outcome": split(outcomes),
        "critiques": critiques,
        "curated_at": curated[0]["at"] if curated else None,
    }


def review_item(store: Store, rollout_id: str) -> AnnotationInput:
    problem = store.records(
        Problem,
        "SELECT * FROM problems WHERE problem_id = (SELECT problem_id FROM rollouts WHERE rollout_id = ?)",
        [rollout_id],
    )
    rollout = store.records(Rollout, "SELECT * FROM rollouts WHERE rollout_id = ?", [rollout_id])
    if not rollout or not problem:
        raise ReviewError(f"rollout {rollout_id!r} is not in the store")
    steps = [
        r["text"] for r in store.rows("SELECT text FROM steps WHERE rollout_id = ? ORDER BY step_index", [rollout_id])
    ]
    return AnnotationInput(problem=problem[0], rollout=rollout[0], steps=steps)


def save_verdict(
    store: Store,
    rollout_id: str,
    target: ReviewTarget,
    verdict: Verdict,
    reviewer: str,
    run_id: str,
    *,
    step_index: int | None = None,
) -> datetime:
    """Record the reviewer's verdict on a step or on the final answer as a `human` label
    (replacing this reviewer's earlier verdict there); returns when it was labelled."""
    item = review_item(store, rollout_id)
    human = reviewer_annotator(reviewer)
    reason = UNSURE_REASON if verdict == "unknown" else None
    label: StepLabel | OutcomeLabel
    if target == "step":
        if step_index is None or not 0 <= step_index < len(item.steps):
            raise ReviewError(f"rollout {rollout_id!r} has no step {step_index} (it has {len(item.steps)})")
        label = human.step_label(item, step_index, verdict, run_id, reason=reason)
        table = "step_labels"
    else:
        label = human.outcome_label(item, verdict, run_id, reason=reason)
        table = "outcome_labels"
    with store.transaction():
        store.write(table, [label], on_conflict="replace")
    return label.labeled_at


def agreement_figures(store: Store) -> dict[str, Any]:
    """The `annotator_agreement` view, plus how much has been reviewed and by whom. A verdict
    that is no evidence (`Evidence.counts`: a refute-only checker's `correct`) counts as an
    abstention, as `rmforge eval` counts it: the view's own query over the step labels with
    those verdicts read as `unknown`."""
    reviewed = store.rows(
        """SELECT count(*) AS labels, count(DISTINCT (rollout_id, step_index)) AS steps,
                  count(DISTINCT rollout_id) AS rollouts, count(DISTINCT model) AS reviewers
           FROM step_labels WHERE annotator = 'human'"""
    )[0]
    overlap = store.rows(
        """SELECT count(*) AS steps, count(*) FILTER (verdicts = 1) AS agreed FROM (
               SELECT count(DISTINCT verdict) AS verdicts FROM step_labels
               WHERE annotator = 'human' AND verdict <> 'unknown'
               GROUP BY rollout_id, step_index HAVING count(*) > 1)"""
    )[0]
    return {
        "rows": store.rows(_AGREEMENT_WITH_ABSTENTIONS, [refute_only_annotators(store)]),
        "reviewed": reviewed,
        "reviewer_overlap": overlap,
    }


# The `annotator_agreement` view over step labels whose refute-only `correct` reads `unknown`
# (a CTE named like the table stands in for it in the view's query).
_AGREEMENT_WITH_ABSTENTIONS = """
WITH step_labels AS (
    SELECT * REPLACE (CASE WHEN verdict = 'correct' AND list_contains(?, annotator) THEN 'unknown'
                           ELSE verdict END AS verdict)
    FROM step_labels
), """ + VIEWS["annotator_agreement"].strip().removeprefix("WITH")
