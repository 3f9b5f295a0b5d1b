"""Measure labels against human labels (ProcessBench format): per annotator and per policy.

For each annotator alone, and for each consensus policy over all of them, the step
verdicts are built exactly as curation builds them (tasks/consensus.py), then compared
with the human-labelled earliest wrong step:

* ProcessBench F1: the predicted earliest error is the first step judged incorrect, or -1
  when none is; accuracy on erroneous solutions (prediction == label), on correct ones
  (prediction == -1), and their harmonic mean.
* Label precision: an emitted `incorrect` is right on the labelled step, wrong before it
  or on a fully correct solution; an emitted `correct` is right before the labelled step
  (or anywhere on a correct solution), wrong on it. Verdicts after the labelled step are
  undetermined (the human label says nothing there) and left out.
  `correct` precision is also given without the labels that rest only on the rollout's own
  correct outcome (`outcome_implied`: a solution can reach the right answer through a wrong
  step), so the precision of direct step evidence shows.
* Recall: share of erroneous solutions whose labelled step is judged incorrect.
* Coverage: share of all steps given a decided verdict.
* Final answers (annotators that label outcomes, and each policy's outcome consensus):
  decided verdicts compared with the human `final_answer_correct`: agreement among the
  decided ones, precision of `incorrect`, and the share decided. An `unknown` is no claim,
  so it lowers the share decided, never the agreement.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from prefect import task
from prefect.cache_policies import NO_CACHE

from rmforge.annotators import annotator_class
from rmforge.annotators.base import LLMAnnotator
from rmforge.schemas.config import CurationConfig
from rmforge.store import Store
from rmforge.tasks.consensus import consensus_rows


class ReferencePoint(TypedDict):
    name: str
    gsm8k_f1: float
    average_f1: float


# Published ProcessBench F1 on its GSM8K split (and the average over its four splits).
REFERENCE_POINTS: list[ReferencePoint] = [
    {"name": "Qwen2.5-Math-PRM-7B", "gsm8k_f1": 82.4, "average_f1": 73.5},
    {"name": "GPT-4o (critic)", "gsm8k_f1": 79.2, "average_f1": 61.9},
]


@dataclass
class Scores:
    name: str
    kind: str  # "annotator" or "policy"
    solutions: int = 0
    erroneous: int = 0
    acc_erroneous: float = 0.0
    acc_correct: float = 0.0
    f1: float = 0.0
    incorrect_labels: int = 0
    incorrect_precision: float | None = None
    correct_labels: int = 0
    correct_precision: float | None = None
    outcome_implied_correct: int = 0  # `correct` labels resting only on the rollout's own outcome
    correct_precision_direct: float | None = None  # without them
    incorrect_recall: float = 0.0
    coverage: float = 0.0
    # Final answers against the human `final_answer_correct` (None: no outcome verdicts).
    outcomes_decided: int | None = None
    outcome_agreement: float | None = None
    outcome_incorrect_precision: float | None = None
    outcome_coverage: float | None = None
    completions: int | None = None
    seconds: float | None = None
    judged: dict[str, int] = field(default_factory=dict)


def labelled_rollout_ids(path: str) -> list[str]:
    """The ids of the solutions in a ProcessBench-format file (they are their rollout ids)."""
    from rmforge.problems.records import read_records

    return [str(row["id"]) for _, row in read_records(Path(path)) if isinstance(row, dict) and row.get("id")]


def human_first_errors(store: Store, rollout_ids: Sequence[str]) -> dict[str, int]:
    """The human-labelled earliest wrong step per rollout (-1: all correct)."""
    rows = store.rows(
        """
        SELECT rollout_id, min(step_index) FILTER (verdict = 'incorrect') AS first_error
        FROM step_labels WHERE annotator = 'human' AND rollout_id IN (SELECT UNNEST(?))
        GROUP BY rollout_id
        """,
        [list(rollout_ids)],
    )
    return {r["rollout_id"]: -1 if r["first_error"] is None else r["first_error"] for r in rows}


def score_verdicts(
    name: str,
    kind: str,
    verdicts: dict[str, dict[int, str]],
    step_counts: dict[str, int],
    labels: dict[str, int],
    outcome_implied: frozenset[tuple[str, int]] = frozenset(),
) -> Scores:
    """Scores of decided step verdicts {rollout: {step: verdict}} against human first errors;
    `outcome_implied`: the (rollout, step) verdicts that rest only on the rollout's own outcome."""
    s = Scores(name=name, kind=kind, solutions=len(labels))
    right_err = right_ok = decided = total_steps = 0
    judged = {
        "incorrect_right": 0,
        "incorrect_wrong": 0,
        "correct_right": 0,
        "correct_wrong": 0,
        "outcome_implied_correct_right": 0,
        "outcome_implied_correct_wrong": 0,
    }
    for rollout_id, label in labels.items():
        steps = verdicts.get(rollout_id, {})
        total_steps += step_counts[rollout_id]
        decided += len(steps)
        flagged = sorted(i for i, v in steps.items() if v == "incorrect")
        predicted = flagged[0] if flagged else -1
        if label >= 0:
            s.erroneous += 1
            right_err += predicted == label
            s.incorrect_recall += steps.get(label) == "incorrect"
        else:
            right_ok += predicted == -1
        for index, verdict in steps.items():
            if label >= 0 and index > label:
                continue  # undetermined after the first error
            right = (index == label) if verdict == "incorrect" else (label == -1 or index < label)
            judged[f"{verdict}_{'right' if right else 'wrong'}"] += 1
            if (rollout_id, index) in outcome_implied:
                judged[f"outcome_implied_{verdict}_{'right' if right else 'wrong'}"] += 1
    correct_solutions = s.solutions - s.erroneous
    s.acc_erroneous = _ratio(right_err, s.erroneous)
    s.acc_correct = _ratio(right_ok, correct_solutions)
    s.f1 = _harmonic(s.acc_erroneous, s.acc_correct)
    s.incorrect_labels = judged["incorrect_right"] + judged["incorrect_wrong"]
    s.correct_labels = judged["correct_right"] + judged["correct_wrong"]
    s.incorrect_precision = _ratio(judged["incorrect_right"], s.incorrect_labels) if s.incorrect_labels else None
    s.correct_precision = _ratio(judged["correct_right"], s.correct_labels) if s.correct_labels else None
    s.outcome_implied_correct = judged["outcome_implied_correct_right"] + judged["outcome_implied_correct_wrong"]
    direct_right = judged["correct_right"] - judged["outcome_implied_correct_right"]
    direct = s.correct_labels - s.outcome_implied_correct
    s.correct_precision_direct = _ratio(direct_right, direct) if direct else None
    s.incorrect_recall = _ratio(int(s.incorrect_recall), s.erroneous)
    s.coverage = _ratio(decided, total_steps)
    s.judged = judged
    return s


def _ratio(a: int, b: int) -> float:
    return round(a / b, 4) if b else 0.0


def _harmonic(a: float, b: float) -> float:
    return round(2 * a * b / (a + b), 4) if a + b else 0.0


def human_outcomes(store: Store, rollout_ids: Sequence[str]) -> dict[str, str]:
    """The human verdict on each rollout's final answer, where there is one."""
    rows = store.rows(
        "SELECT rollout_id, verdict FROM outcome_labels WHERE annotator = 'human' AND rollout_id IN (SELECT UNNEST(?))",
        [list(rollout_ids)],
    )
    return {r["rollout_id"]: r["verdict"] for r in rows if r["verdict"] in ("correct", "incorrect")}


def score_outcomes(scores: Scores, verdicts: dict[str, str], human: dict[str, str]) -> None:
    """Fill `scores`' final-answer fields from decided outcome verdicts {rollout: verdict}."""
    if not human or not verdicts:
        return  # no human outcomes, or an annotator that gives no outcome verdicts
    decided = {rid: v for rid, v in verdicts.items() if rid in human and v in ("correct", "incorrect")}
    flagged = [rid for rid, v in decided.items() if v == "incorrect"]
    scores.outcomes_decided = len(decided)
    scores.outcome_agreement = (
        _ratio(sum(v == human[rid] for rid, v in decided.items()), len(decided)) if decided else None
    )
    scores.outcome_incorrect_precision = (
        _ratio(sum(human[rid] == "incorrect" for rid in flagged), len(flagged)) if flagged else None
    )
    scores.outcome_coverage = _ratio(len(decided), len(human))


def policy_config(policy: str) -> CurationConfig:
    """Curation settings with the consensus policy named `policy` (validated by the model)."""
    return CurationConfig.model_validate({"consensus": policy})


def decided_verdicts(
    store: Store, annotators: Sequence[str], policy: str, rollout_ids: Sequence[str]
) -> tuple[dict[str, dict[int, str]], frozenset[tuple[str, int]]]:
    """Agreed step verdicts, built as curation builds them, from the given annotators only, and
    the (rollout, step) of those resting only on the rollout's own outcome."""
    steps, _ = consensus_rows(store, list(annotators), policy_config(policy), "eval", rollout_ids)
    out: dict[str, dict[int, str]] = {}
    for row in steps:
        if row.agreed:
            out.setdefault(row.rollout_id, {})[row.step_index] = row.verdict
    return out, frozenset((row.rollout_id, row.step_index) for row in steps if row.outcome_implied)


def decided_outcomes(
    store: Store, annotators: Sequence[str], policy: str, rollout_ids: Sequence[str]
) -> dict[str, str]:
    """The outcome consensus of the given annotators only {rollout: verdict}, as curation builds it."""
    _, outcomes = consensus_rows(store, list(annotators), policy_config(policy), "eval", rollout_ids)
    return {row.rollout_id: row.verdict for row in outcomes}


@task(name="score-labels", cache_policy=NO_CACHE)
def score_labels(
    db: str,
    rollout_ids: list[str],
    annotators: list[str],
    policies: list[str],
    seconds: dict[str, float],
) -> list[dict[str, Any]]:
    """Scores per annotator (alone) and per consensus policy over all of them."""
    with Store(db, read_only=True) as store:
        labels = human_first_errors(store, rollout_ids)
        ids = sorted(labels)
        step_counts = {
            r["rollout_id"]: r["n"]
            for r in store.rows(
                "SELECT rollout_id, count(*) AS n FROM steps WHERE rollout_id IN (SELECT UNNEST(?)) GROUP BY 1", [ids]
            )
        }
        costs = {
            r["annotator"]: r["completions"]
            for r in store.rows(
                "SELECT annotator, sum(completions) AS completions FROM annotator_costs "
                "WHERE rollout_id IN (SELECT UNNEST(?)) GROUP BY 1",
                [ids],
            )
        }
        human = human_outcomes(store, ids)
        results = []
        for name in annotators:
            verdicts, implied = decided_verdicts(store, [name], "ranked", ids)
            scores = score_verdicts(name, "annotator", verdicts, step_counts, labels, implied)
            score_outcomes(scores, decided_outcomes(store, [name], "ranked", ids), human)
            # Only model-backed annotators spend completions.
            scores.completions = int(costs.get(name) or 0) if issubclass(annotator_class(name), LLMAnnotator) else None
            scores.seconds = seconds.get(name)
            results.append(scores)
        if len(annotators) > 1:
            for policy in policies:
                verdicts, implied = decided_verdicts(store, annotators, policy, ids)
                scores = score_verdicts(
                    f"{policy}({','.join(annotators)})", "policy", verdicts, step_counts, labels, implied
                )
                score_outcomes(scores, decided_outcomes(store, annotators, policy, ids), human)
                scores.seconds = round(sum(seconds.get(n, 0.0) for n in annotators), 2)
                results.append(scores)
    return [asdict(s) for s in results]


# ------------------------------------------------------------------ report

_COLUMNS = [
    ("name", "labels from"),
    ("f1", "F1 (%)"),
    ("acc_erroneous", "acc. erroneous"),
    ("acc_correct", "acc. correct"),
    ("incorrect_precision", "`incorrect` precision"),
    ("incorrect_labels", "# incorrect"),
    ("incorrect_recall", "recall"),
    ("correct_precision", "`correct` precision"),
    ("correct_labels", "# correct"),
    ("correct_precision_direct", "`correct` precision, direct"),
    ("outcome_implied_correct", "# outcome-implied"),
    ("coverage", "coverage"),
    ("completions", "completions"),
    ("seconds", "seconds"),
]


def percent(value: float | None) -> str:
    """F1 as ProcessBench and its references print it (82.4), not as a fraction beside them."""
    return "-" if value is None else f"{100 * value:.1f}"


def _cell(value: Any, key: str = "") -> str:
    if key == "f1":
        return percent(value)
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


_OUTCOME_COLUMNS = [
    ("name", "labels from"),
    ("outcome_agreement", "agreement (decided)"),
    ("outcomes_decided", "# decided"),
    ("outcome_coverage", "share decided"),
    ("outcome_incorrect_precision", "`incorrect` precision"),
]


def markdown_table(results: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]] = _COLUMNS) -> str:
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    for row in results:
        lines.append("| " + " | ".join(_cell(row[key], key) for key, _ in columns) + " |")
    return "\n".join(lines) + "\n"


def outcome_section(results: Sequence[dict[str, Any]]) -> str:
    """The final-answer table, for the rows that gave outcome verdicts."""
    rows = [r for r in results if r.get("outcomes_decided") is not None]
    if not rows:
        return ""
    return (
        "## Final answers against the human `final_answer_correct`\n\n"
        f"{markdown_table(rows, _OUTCOME_COLUMNS)}\n"
        "- agreement: share of decided verdicts (`correct` / `incorrect`) that match the human one; an "
        "`unknown` (no gold, no answer found, undecidable) is no claim and only lowers the share decided.\n\n"
    )


def report_markdown(source: str, results: Sequence[dict[str, Any]], solutions: int, erroneous: int) -> str:
    references = "\n".join(f"| {r['name']} | {r['gsm8k_f1']} | {r['average_f1']} |" for r in REFERENCE_POINTS)
    return (
        f"# rmforge eval: `{source}`\n\n"
        f"{solutions} human-labelled solutions, {erroneous} with an error. Each row builds step verdicts "
        'as curation does (only evidence counts; see README "What a label means") and compares them with '
        "the human-labelled earliest wrong step.\n\n"
        f"{markdown_table(results)}\n"
        "- F1 (in %, as the references below): ProcessBench's harmonic mean of accuracy on erroneous solutions (first step judged "
        "incorrect = the labelled one) and on correct ones (no step judged incorrect).\n"
        "- precision: share of emitted labels that agree with the human label, counting only steps up to "
        "the labelled one (later steps are undetermined); recall: share of erroneous solutions whose "
        "labelled step is judged incorrect; coverage: share of steps given a decided verdict.\n"
        "- `correct` precision, direct: without the `correct` labels that rest only on the rollout's own "
        "correct final answer (# outcome-implied: Math-Shepherd's \"it reaches the gold, so every step is "
        'right"; on ProcessBench many solutions reach the right answer through a wrong step).\n'
        "- A refute-only annotator (e.g. `z3_arith`) emits no `correct` labels: finding nothing wrong is "
        "no evidence that a step is right.\n\n"
        f"{outcome_section(results)}"
        "## Published reference points (ProcessBench F1, in %)\n\n"
        "| model | GSM8K | average of 4 splits |\n|---|---|---|\n"
        f"{references}\n"
    )


def write_chart(results: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in results]
    metrics = [
        ("f1", "ProcessBench F1"),
        ("incorrect_precision", "`incorrect` precision"),
        ("incorrect_recall", "recall"),
        ("coverage", "coverage"),
    ]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(names) + 2), 4.2))
    width = 0.8 / len(metrics)
    for k, (key, title) in enumerate(metrics):
        values = [r[key] or 0.0 for r in results]
        ax.bar([i + k * width for i in range(len(names))], values, width, label=title)
    for ref, style, offset in zip(REFERENCE_POINTS, ("--", ":"), (0.012, -0.045), strict=True):
        ax.axhline(ref["gsm8k_f1"] / 100, linestyle=style, color="gray", linewidth=1)
        ax.text(
            len(names) - 0.2,
            ref["gsm8k_f1"] / 100 + offset,
            f"{ref['name']}: F1 {ref['gsm8k_f1']} (GSM8K)",
            fontsize=7,
            color="gray",
            ha="right",
        )
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, rotation=15, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Labels against human first errors")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


@task(name="write-eval-report", cache_policy=NO_CACHE)
def write_eval_report(out_dir: str, source: str, results: list[dict[str, Any]]) -> dict[str, str]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    solutions = results[0]["solutions"] if results else 0
    erroneous = results[0]["erroneous"] if results else 0
    markdown = report_markdown(source, results, solutions, erroneous)
    (out / "report.md").write_text(markdown + "\n![chart](report.png)\n", encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    write_chart(results, out / "report.png")
    return {
        "report": str(out / "report.md"),
        "chart": str(out / "report.png"),
        "metrics": str(out / "metrics.json"),
        "markdown": markdown,
    }
