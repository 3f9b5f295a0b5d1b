"""The export datasets: one spec each, the one place that says what a dataset is.

Each `ExportSpec` holds what `rmforge export` needs to write a dataset and to describe it: the SQL
that selects its rows, its columns in the standard (text) format and, where TRL reads one, in the
conversational (chat messages) format, what its labels mean, what trainers read it as, and the
Hugging Face task category and tag of its card. Adding a dataset is one entry in `EXPORTS`; the
export (tasks/export.py) writes and describes every entry. Pure data: the rows are fetched and
shaped by `rmforge.exports.datasets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from rmforge.schemas.config import ExportFormat

PROMPT_END = "\n\n"  # ends every standard-format prompt
# Whose critiques the critique dataset holds: the judge's replies to its request (see its SQL).
CRITIQUE_ANNOTATOR = "judge"

Message = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(Message)


@dataclass(frozen=True)
class ChatShape:
    """A dataset in the conversational format: TRL's chat messages."""

    schema: pa.Schema  # its columns
    # question: the system prompt rmforge's generator sent (for rollouts it sampled) and the question
    # as the user's message; judge_request: the judge's request over the rollout's stored steps.
    prompt: Literal["question", "judge_request"]
    # (column, the standard row's column it holds): each is one assistant message.
    replies: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ExportSpec:
    name: str  # the dataset: files `<name>.parquet`, `<name>.jsonl`, `hf/<name>/`
    format: str  # what trainers read it as (the card's "format" column)
    meaning: str  # what a label means (the card's "What a label means")
    schema: pa.Schema  # the standard format's columns
    sql: str  # `{outcome}` is replaced by the outcome verdicts' SQL; extra columns feed the row shapes
    task_category: str  # the Hub's task category of a model trained on it
    tag: str  # the card's tag for it
    # A column of steps, written without whitespace around each so that the step separator, a run of
    # newlines longer than any inside a step, is unambiguous (`rmforge.exports.datasets.step_separator`).
    step_column: str | None = None
    chat: ChatShape | None = None  # None: text only in both formats (TRL's PRMTrainer reads text)


def _strings(*names: str) -> list[pa.Field]:
    return [pa.field(name, pa.string()) for name in names]


def _messages(*names: str) -> list[pa.Field]:
    return [pa.field(name, MESSAGES) for name in names]


_PROCESS_IDS = _strings("rollout_id", "problem_id")
_PREFERENCE_IDS = _strings("chosen_rollout_id", "rejected_rollout_id", "problem_id")
_KTO_REST = [pa.field("label", pa.bool_())] + _strings("rollout_id", "problem_id")
_CRITIQUE_REST = [pa.field("first_error_step", pa.int64())] + _strings("verdict", "model", "rollout_id")

# The Hub's task categories: a PRM is trained as a token classifier (TRL's PRMTrainer), reward
# models on pairs and labelled outcomes as sequence classifiers, critiques as text generation.
_SPECS = (
    ExportSpec(
        name="process",
        format="TRL stepwise supervision",
        meaning=(
            "`labels[i]` is true when the consensus found step *i* correct, which takes an annotator "
            "whose `correct` verdict is evidence (confirms steps: yes, below); false when it found the "
            "step wrong, which takes one whose `incorrect` verdict is evidence (refutes steps: yes). "
            "The consensus rule below settles disagreements. "
            "Each example holds a rollout's steps in order while they are agreed and ends at its first "
            "false step; a step without agreement ends the example before it. `soft_labels[i]` is the "
            "probability a probability-scoring annotator that agrees gave step *i* (a Monte Carlo estimate "
            "that a correct answer is reachable from it, or a process reward model's score), else the hard "
            "label as 1.0 / 0.0 "
            "(`fractional_soft_labels` counts the values strictly between 0 and 1). "
            "`outcome_implied[i]` is true when label *i* rests only on the rollout's own correct final "
            'answer ("it reaches the gold, so every step is right", Math-Shepherd\'s good prefix), not on '
            "evidence about the step: solutions can reach the right answer through a wrong step "
            "(`outcome_implied_labels` counts them; curation with `direct_step_evidence` drops them)."
        ),
        schema=pa.schema(
            _strings("prompt")
            + [
                pa.field("completions", pa.list_(pa.string())),
                pa.field("labels", pa.list_(pa.bool_())),
                pa.field("soft_labels", pa.list_(pa.float64())),
            ]
            + _PROCESS_IDS
            + [
                pa.field("annotators", pa.list_(pa.string())),
                pa.field("label_supporters", pa.list_(pa.list_(pa.string()))),
                pa.field("outcome_implied", pa.list_(pa.bool_())),
            ]
        ),
        sql="""
        SELECT prompt, completions, labels, soft_labels, rollout_id, problem_id, annotators, label_supporters,
               outcome_implied
        FROM process_examples ORDER BY example_id""",
        task_category="token-classification",
        tag="process-reward-model",
        step_column="completions",
    ),
    ExportSpec(
        name="preference",
        format="TRL preference / OpenRLHF reward model",
        meaning=(
            "`chosen` is a response whose final answer was verified correct, `rejected` one verified "
            "incorrect, for the same prompt; unknown outcomes and duplicates are never used."
        ),
        schema=pa.schema(_strings("prompt", "chosen", "rejected") + _PREFERENCE_IDS),
        sql="""
        SELECT pp.prompt, pp.chosen, pp.rejected, pp.chosen_rollout_id, pp.rejected_rollout_id, pp.problem_id,
               p.domain, [c.generator, r.generator] AS prompt_generators
        FROM preference_pairs pp LEFT JOIN problems p USING (problem_id)
        LEFT JOIN rollouts c ON c.rollout_id = pp.chosen_rollout_id
        LEFT JOIN rollouts r ON r.rollout_id = pp.rejected_rollout_id
        ORDER BY pp.pair_id""",
        task_category="text-classification",
        tag="preference",
        chat=ChatShape(
            pa.schema(_messages("prompt", "chosen", "rejected") + _PREFERENCE_IDS),
            prompt="question",
            replies=(("chosen", "chosen"), ("rejected", "rejected")),
        ),
    ),
    ExportSpec(
        name="kto",
        format="TRL unpaired preference (KTO)",
        meaning=(
            "`label` is true when the rollout's final answer was verified correct, false when verified "
            "incorrect: of the annotators that label outcomes, the highest authority with a verdict "
            "decides (`unknown` abstains; disagreement at that authority leaves the rollout out). Only "
            "rollouts kept by deduplication."
        ),
        schema=pa.schema(_strings("prompt", "completion") + _KTO_REST),
        sql="""
        WITH outcome AS ({outcome})
        SELECT p.question AS prompt, r.response AS completion, o.verdict = 'correct' AS label,
               r.rollout_id, r.problem_id, p.domain, [r.generator] AS prompt_generators
        FROM rollouts r JOIN problems p USING (problem_id) JOIN outcome o USING (rollout_id)
        LEFT JOIN rollout_curation c USING (rollout_id)
        WHERE coalesce(c.status, 'kept') = 'kept'
        ORDER BY r.rollout_id""",
        task_category="text-classification",
        tag="kto",
        chat=ChatShape(
            pa.schema(_messages("prompt", "completion") + _KTO_REST),
            prompt="question",
            replies=(("completion", "completion"),),
        ),
    ),
    ExportSpec(
        name="critiques",
        format="critique SFT",
        meaning=(
            "`critique` (`completion` in the conversational format) is a judge's review of `response`; "
            "`first_error_step` is the index of the first step it found wrong (-1: none, empty: undecided); "
            "`verdict` is its verdict on the outcome."
        ),
        schema=pa.schema(_strings("prompt", "response", "critique") + _CRITIQUE_REST),
        sql=f"""
        SELECT p.question AS prompt, r.response, c.text AS critique, c.first_error_step,
               c.verdict, c.model, c.rollout_id,
               (SELECT list(s.text ORDER BY s.step_index) FROM steps s WHERE s.rollout_id = c.rollout_id) AS steps
        FROM critiques c JOIN rollouts r USING (rollout_id) JOIN problems p USING (problem_id)
        LEFT JOIN rollout_curation k USING (rollout_id)
        WHERE coalesce(k.status, 'kept') = 'kept'  -- no critiques of contaminated or duplicate rollouts
          -- the judge's replies to its request; code_check's critiques are programs with their output,
          -- one per step, no reply to one request (they stay in the store and show in review)
          AND c.annotator = '{CRITIQUE_ANNOTATOR}'
        ORDER BY c.critique_id""",
        task_category="text-generation",
        tag="critique",
        # Critique SFT: the request the judge answered, and the critique as the assistant's reply.
        chat=ChatShape(
            pa.schema(_messages("prompt", "completion") + _strings("response") + _CRITIQUE_REST),
            prompt="judge_request",
            replies=(("completion", "critique"),),
        ),
    ),
)

EXPORTS: dict[str, ExportSpec] = {spec.name: spec for spec in _SPECS}


def export_schema(name: str, style: ExportFormat) -> pa.Schema:
    """The columns of dataset `name` in format `style`."""
    spec = EXPORTS[name]
    return spec.chat.schema if style == "conversational" and spec.chat is not None else spec.schema
