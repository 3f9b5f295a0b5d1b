"""Typed records that flow through rmforge. One pydantic model per table row.

No I/O here: the store turns these into Arrow tables (see `schemas.tables`).
JSON-valued columns (configs, metadata) are plain strings so every table has a
flat, SQL-friendly shape.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Verdict = Literal["correct", "incorrect", "unknown"]
VERDICTS: tuple[str, ...] = ("correct", "incorrect", "unknown")
Domain = Literal["math", "logic"]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def stable_hash(*parts: Any, length: int = 16) -> str:
    """Content hash used for every id: same content, same id, on any machine."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(Record):
    problem_id: str
    question: str = Field(min_length=1)
    gold_answer: str | None = None
    source: str
    domain: Domain = "math"
    difficulty: int | None = None
    reference_steps: list[str] = Field(default_factory=list)
    metadata: str = "{}"

    @staticmethod
    def make_id(question: str, gold_answer: str | None) -> str:
        return stable_hash("problem", question.strip(), (gold_answer or "").strip())


class Rollout(Record):
    rollout_id: str
    problem_id: str
    response: str
    model: str
    generator: str
    sampling: str = "{}"
    sample_index: int = 0
    num_tokens: int | None = None
    finish_reason: str | None = None
    cumulative_logprob: float | None = None
    run_id: str
    created_at: datetime = Field(default_factory=utc_now)


class Step(Record):
    rollout_id: str
    step_index: int
    text: str


class StepLabel(Record):
    rollout_id: str
    step_index: int
    annotator: str
    annotator_version: str
    config_hash: str
    model: str | None = None
    verdict: Verdict
    score: float | None = None
    reason: str | None = None
    # The verdict rests only on the rollout's own correct final answer ("it reaches the gold,
    # so every step is right": Math-Shepherd's good prefix), not on evidence about the step.
    outcome_implied: bool = False
    run_id: str
    labeled_at: datetime = Field(default_factory=utc_now)


class OutcomeLabel(Record):
    rollout_id: str
    annotator: str
    annotator_version: str
    config_hash: str
    model: str | None = None
    verdict: Verdict
    predicted_answer: str | None = None
    score: float | None = None
    reason: str | None = None
    run_id: str
    labeled_at: datetime = Field(default_factory=utc_now)


class Critique(Record):
    critique_id: str
    rollout_id: str
    annotator: str
    model: str | None = None
    sample_index: int
    first_error_step: int | None = None
    verdict: Verdict
    text: str
    run_id: str
    created_at: datetime = Field(default_factory=utc_now)


class AnnotatorCost(Record):
    """What one annotator spent on one rollout (e.g. MC completions)."""

    rollout_id: str
    annotator: str
    config_hash: str
    completions: int
    run_id: str
    # The done marker's input: the rollout's step count when it was labelled. A marker
    # whose count differs from the rollout's steps now is stale and the rollout is redone.
    steps: int | None = None


class BatchClaim(Record):
    """A rollout taken by one annotate run for one annotator configuration, so that runs sharing
    a store label each rollout once. The claim holds while its run is alive (view `runs_health`
    says `running`: the run's heartbeat is its lease) and is deleted with the rollout's labels
    written, or when the run fails."""

    rollout_id: str
    annotator: str
    config_hash: str
    run_id: str  # the claimant
    batch_id: str  # the claims taken in one transaction: a run may have several batches in flight
    claimed_at: datetime = Field(default_factory=utc_now)
    # The claimant's process: on its own machine a claim whose process is gone (SIGKILL) is dead
    # at once, not only once the run's heartbeat has gone stale.
    host: str | None = None
    pid: int | None = None
    process_started: str | None = None  # from /proc: a reused pid is another process


class StepConsensus(Record):
    """The curated verdict on one step. `annotators` voted; `supporters` gave evidence for
    the verdict (see annotators.base.Evidence); `overruled` gave evidence against it and
    were outranked (a formal refutation over a model's vote, a human over everyone).
    `outcome_implied`: every supporter's label rests only on the rollout's own correct outcome."""

    rollout_id: str
    step_index: int
    verdict: Verdict
    agreed: bool
    score: float | None = None
    annotators: list[str]
    supporters: list[str] = Field(default_factory=list)
    overruled: list[str] = Field(default_factory=list)
    votes: str = "{}"
    outcome_implied: bool = False
    run_id: str


class OutcomeConsensus(Record):
    """The curated verdict on a rollout's final answer, from outcome-labelling annotators."""

    rollout_id: str
    verdict: Verdict
    supporters: list[str] = Field(default_factory=list)
    votes: str = "{}"
    run_id: str


class RolloutCuration(Record):
    rollout_id: str
    problem_id: str
    status: Literal["kept", "exact_duplicate", "near_duplicate", "contaminated"]
    duplicate_of: str | None = None
    similarity: float | None = None
    run_id: str


class PreferencePair(Record):
    pair_id: str
    problem_id: str
    prompt: str
    chosen: str
    rejected: str
    chosen_rollout_id: str
    rejected_rollout_id: str
    run_id: str


class ProcessExample(Record):
    example_id: str
    rollout_id: str
    problem_id: str
    prompt: str
    completions: list[str]
    labels: list[bool]
    soft_labels: list[float]
    annotators: list[str]
    label_supporters: list[list[str]] = Field(default_factory=list)
    # Per label: it rests only on the rollout's own correct outcome (see StepLabel).
    outcome_implied: list[bool] = Field(default_factory=list)
    run_id: str


RunStatus = Literal["running", "completed", "failed", "cancelled", "crashed"]


class RunRecord(Record):
    run_id: str
    flow: str
    config: str
    # "crashed": a run found `running` with a stale heartbeat by a later run of its flow.
    status: RunStatus
    started_at: datetime = Field(default_factory=utc_now)
    finished_at: datetime | None = None
    summary: str = "{}"
    # Refreshed every `heartbeat_s` seconds while the run's process is alive (view `runs_health`).
    heartbeat_at: datetime | None = None
    heartbeat_s: float | None = None


class QuarantineRecord(Record):
    quarantine_id: str
    source: str
    record_ref: str
    field: str
    reason: str
    raw: str
    run_id: str
    created_at: datetime = Field(default_factory=utc_now)


class TextEmbedding(Record):
    """A cached sentence embedding: texts are embedded once per model and dtype."""

    text_hash: str
    model: str
    dtype: str
    vector: list[float]
    created_at: datetime = Field(default_factory=utc_now)


class ProblemCuration(Record):
    problem_id: str
    status: Literal["kept", "exact_duplicate", "near_duplicate", "contaminated"]
    duplicate_of: str | None = None
    similarity: float | None = None
    run_id: str


class Contamination(Record):
    """Why a problem was dropped: it overlaps an evaluation item."""

    problem_id: str
    eval_set: str
    eval_item_id: str
    method: Literal["ngram", "embedding"]
    score: float
    evidence: str | None = None
    run_id: str
