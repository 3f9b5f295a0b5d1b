"""Bench: precision and coverage of Monte Carlo step labels vs k and completer strength.

On ProcessBench's GSM8K split (human label = index of the earliest wrong step, -1: none),
`mc` and `mc_binary` label every solution with a completer of controlled strength: a fake
`Generator` that continues a prefix to the gold answer with probability P_GOOD when the
prefix ends before the human-labelled error, P_BAD at or after it (the prefix's position is
found by matching the request's assistant prefix against the solution's steps). Both rules
are scored on the same samples:

- old: `incorrect` whenever no graded completion of a prefix succeeds (read back from the
  kept scores: mc's value 0.0; mc_binary's search candidate, the first step scored 0.0);
- new: the power test of annotators/completions.py (the completer must reach the gold on the
  problem, and a good prefix fails all k with chance E[(1 - p)^k] <= significance, p measured from
  the question with its uncertainty), else `unknown`.

Scores as `rmforge eval` does (tasks/evaluate.py): precision of emitted `incorrect` and
`correct` labels up to the labelled step, recall of the labelled error, coverage. `--real N`
adds one point: mc_binary with the packaged model on N solutions (k=4, as in issue 16).
Writes bench/reports/mc_power.md and bench/reports/mc_power.png.
Run: [PROCESSBENCH=path/to/gsm8k.json] .venv/bin/python bench/mc_power.py [--solutions N] [--real N]
(default data: ../shared/data/processbench/gsm8k.json beside the checkout).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rmforge.annotators.base import AnnotationInput
from rmforge.annotators.completions import prefix_text
from rmforge.annotators.mc import MonteCarloAnnotator
from rmforge.annotators.mc_binary import BinarySearchMCAnnotator
from rmforge.generators.base import Completion, GenerationRequest, Generator
from rmforge.schemas.config import DEFAULT_MODEL, GeneratorConfig, SamplingConfig
from rmforge.schemas.records import Problem, Rollout, StepLabel
from rmforge.tasks.evaluate import Scores, score_verdicts

# The shared material sits beside the checkout (../shared); the bench needs it, the README commands do not.
DATA = Path(os.environ.get("PROCESSBENCH", Path(__file__).resolve().parents[2] / "shared/data/processbench/gsm8k.json"))
GOLD = DATA.with_name("gsm8k_gold_answers.json")
KS = (1, 2, 4, 8, 16)
P_GOOD = (0.05, 0.2, 0.5, 0.8)
P_BAD = 0.02
SIGNIFICANCE = 0.05
BASELINE_K = 4
REAL_K = 4
REAL_MAX_TOKENS = 256
FINDINGS = """## Reading

- The power test trades recall for precision where the completer is weak or k small: a completer
  that rarely solves the problem cannot tell a bad prefix from bad luck, so its zero-success
  `incorrect` labels (old rule) are mostly wrong, and the new rule leaves them `unknown`.
- Where k failures are already unlikely for a good prefix (strong completer, large k) both rules
  give the same labels: the test costs nothing there.
- The chance is the posterior predictive under a uniform prior on p, so a few lucky successes are
  not read as p = 1: with k = 1 a refutation needs 19 successes from the question without a failure,
  with k = 4 at least 2 of 2 (a point estimate would accept 1 of 1 for any k).
- `mc` does not refute a prefix that a later prefix of the same rollout continues to the gold (MC's
  own evidence that the gold is reachable through it). Measured with and without that rule at
  k = 4: `incorrect` precision 0.857 vs 0.522 at p_good 0.2 and 0.963 vs 0.852 at 0.5; it costs
  recall where the completer recovers from a wrong step (0.68 vs 0.80 at p_good 0.8).
- The probe adds at most `baseline_k` completions per problem with a candidate `incorrect`.
- On GSM8K few solutions reach the right answer through a wrong step, so outcome-implied `correct`
  labels are precise here; the gap is larger on MATH / OlympiadBench / Omni-MATH (issue 16).
"""
REPORT = Path(__file__).parent / "reports" / "mc_power.md"
CHART = REPORT.with_suffix(".png")


def load_items(limit: int | None) -> tuple[list[AnnotationInput], dict[str, int]]:
    """ProcessBench solutions as annotation inputs (rollout id = solution id) and their human labels."""
    records = json.loads(DATA.read_text())[:limit]
    gold = json.loads(GOLD.read_text())
    items, labels = [], {}
    for record in records:
        problem = Problem(
            problem_id=Problem.make_id(record["problem"], gold[record["id"]]),
            question=record["problem"],
            gold_answer=gold[record["id"]],
            source="processbench",
        )
        rollout = Rollout(
            rollout_id=record["id"],
            problem_id=problem.problem_id,
            response="\n".join(record["steps"]),
            model=record["generator"],
            generator="processbench",
            finish_reason="stop",
            run_id="bench",
        )
        items.append(AnnotationInput(problem=problem, rollout=rollout, steps=record["steps"]))
        labels[record["id"]] = record["label"]
    return items, labels


class ControlledCompleter(Generator):
    """Reaches the gold with P_GOOD from a prefix before the human-labelled error, P_BAD from one at or after it."""

    backend = "bench"

    def __init__(self, items: Sequence[AnnotationInput], labels: dict[str, int], p_good: float) -> None:
        self.p_good = p_good
        self.gold = {item.problem.question: item.problem.gold_answer for item in items}
        # (question, assistant prefix) -> is the prefix before the labelled error?
        self.good: dict[tuple[str, str], bool] = {}
        for item in items:
            error = labels[item.rollout.rollout_id]
            for i in range(-1, len(item.steps)):
                self.good.setdefault((item.problem.question, prefix_text(item, i)), error < 0 or i < error)

    @property
    def model_name(self) -> str:
        return f"controlled-{self.p_good}"

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[list[Completion]]:
        return [[self._complete(r, sampling.seed, n) for n in range(sampling.n)] for r in requests]

    def _complete(self, request: GenerationRequest, seed: int | None, index: int) -> Completion:
        question, prefix = request.messages[-1].content, request.assistant_prefix or ""
        p = self.p_good if self.good[(question, prefix)] else P_BAD
        rng = random.Random(f"{seed}|{question}|{prefix}|{index}")  # reproducible, independent per sample
        gold = self.gold[question]
        answer = gold if rng.random() < p else f"{gold}1"
        return Completion(text=f" So the answer is \\boxed{{{answer}}}.", num_tokens=8, finish_reason="stop")


def old_rule(annotator: str, labels: list[StepLabel]) -> dict[int, str]:
    """The verdicts the zero-success rule gave on the same samples, read back from the kept scores."""
    verdicts = {}
    for label in sorted(labels, key=lambda lab: lab.step_index):
        if label.verdict != "unknown":
            verdicts[label.step_index] = label.verdict
        elif label.score == 0.0:  # a failed prefix the power test left unknown
            verdicts[label.step_index] = "incorrect"
            if annotator == "mc_binary":
                break  # the search's candidate; OmegaPRM labels nothing after it
    return verdicts


def score(name: str, annotator: str, items, labels, output, rule: str) -> Scores:
    by_rollout: dict[str, list[StepLabel]] = {}
    for label in output.step_labels:
        by_rollout.setdefault(label.rollout_id, []).append(label)
    if rule == "old":
        verdicts = {rid: old_rule(annotator, ls) for rid, ls in by_rollout.items()}
    else:
        verdicts = {
            rid: {lab.step_index: lab.verdict for lab in ls if lab.verdict != "unknown"}
            for rid, ls in by_rollout.items()
        }
    implied = frozenset((lab.rollout_id, lab.step_index) for lab in output.step_labels if lab.outcome_implied)
    steps = {item.rollout.rollout_id: len(item.steps) for item in items}
    scores = score_verdicts(name, annotator, verdicts, steps, labels, implied)
    scores.completions = sum(c.completions for c in output.costs)
    return scores


def run_grid(items, labels) -> list[dict]:
    rows = []
    for annotator_class in (MonteCarloAnnotator, BinarySearchMCAnnotator):
        for p_good in P_GOOD:
            for k in KS:
                generator = ControlledCompleter(items, labels, p_good)
                options = {"k": k, "baseline_k": BASELINE_K, "significance": SIGNIFICANCE}
                output = annotator_class(options, generator=generator).annotate(items, "bench")
                for rule in ("old", "new"):
                    s = score(annotator_class.name, annotator_class.name, items, labels, output, rule)
                    rows.append({"annotator": annotator_class.name, "p_good": p_good, "k": k, "rule": rule, **vars(s)})
    return rows


def run_real(items, labels, n: int) -> dict:
    """mc_binary with the packaged model on the first n solutions; engine start timed apart."""
    chosen = items[:n]
    annotator = BinarySearchMCAnnotator(
        {"k": REAL_K, "max_tokens": REAL_MAX_TOKENS, "baseline_k": BASELINE_K},
        default_generator=GeneratorConfig(model=DEFAULT_MODEL),
    )
    started = time.perf_counter()
    annotator.load_generator()
    engine_s = time.perf_counter() - started
    started = time.perf_counter()
    output = annotator.annotate(chosen, "bench")
    label_s = time.perf_counter() - started
    subset = {item.rollout.rollout_id: labels[item.rollout.rollout_id] for item in chosen}
    rules = {rule: vars(score("mc_binary", "mc_binary", chosen, subset, output, rule)) for rule in ("old", "new")}
    never = sum("never reached" in (lab.reason or "") for lab in output.step_labels)
    return {"n": n, "engine_s": engine_s, "label_s": label_s, "rules": rules, "never_reached_labels": never}


def cpu_flags() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            wanted = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx2")
            return ", ".join(f for f in wanted if f in line.split())
    return "unknown"


def _cell(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def write_chart(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    panels = [
        ("incorrect_precision", "`incorrect` precision"),
        ("incorrect_recall", "recall of the labelled error"),
        ("coverage", "coverage (steps decided)"),
    ]
    colors = dict(zip(P_GOOD, ("tab:red", "tab:orange", "tab:green", "tab:blue"), strict=True))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for p_good in P_GOOD:
            for rule, style in (("old", "--"), ("new", "-")):
                points = [r for r in rows if r["annotator"] == "mc" and r["p_good"] == p_good and r["rule"] == rule]
                ax.plot(
                    [r["k"] for r in points],
                    [r[key] if r[key] is not None else float("nan") for r in points],
                    style,
                    marker="o",
                    color=colors[p_good],
                    label=f"p_good {p_good}, {rule} rule",
                )
        ax.set_xscale("log", base=2)
        ax.set_xticks(KS, [str(k) for k in KS])
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("k (completions per prefix)")
        ax.set_title(f"mc: {title}", fontsize=10)
    axes[0].legend(fontsize=6, loc="lower right")
    fig.suptitle(
        f"ProcessBench GSM8K, controlled completer (p_bad {P_BAD}); dashed: zero successes = incorrect, "
        f"solid: power test (significance {SIGNIFICANCE})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(CHART, dpi=110)
    plt.close(fig)


def report(rows: list[dict], items, labels, real: dict | None, seconds: float, command: str) -> str:
    erroneous = sum(label >= 0 for label in labels.values())
    lines = [
        "# Monte Carlo labels with statistical power",
        "",
        f"{len(items)} ProcessBench GSM8K solutions ({erroneous} with a human-labelled error, "
        f"{sum(len(i.steps) for i in items)} steps). Completer of controlled strength: from a prefix that ends "
        f"before the labelled error it reaches the gold answer with probability p_good, from one at or after it "
        f"with p_bad = {P_BAD}. Old rule: `incorrect` whenever no completion of a prefix succeeds. New rule "
        f"(annotators/completions.py): `incorrect` only when the completer reached the gold on the problem and "
        f"E[(1 - p)^k] <= {SIGNIFICANCE}, p its rate from the question (uniform prior) (baseline_k = {BASELINE_K} probe per "
        "problem), else `unknown`. Both rules are scored on the same samples, as `rmforge eval` scores "
        "(precision up to the labelled step; recall = share of erroneous solutions whose labelled step is "
        "flagged; coverage = share of steps decided). `correct` direct: precision without the labels that "
        "rest only on the rollout's own correct answer (outcome-implied).",
        "",
        "| annotator | p_good | k | rule | `incorrect` precision | # incorrect | recall | `correct` precision "
        "| `correct` direct | # outcome-implied | coverage | F1 | completions/solution |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['annotator']} | {r['p_good']} | {r['k']} | {r['rule']} | {_cell(r['incorrect_precision'])} | "
            f"{r['incorrect_labels']} | {_cell(r['incorrect_recall'])} | {_cell(r['correct_precision'])} | "
            f"{_cell(r['correct_precision_direct'])} | {r['outcome_implied_correct']} | {_cell(r['coverage'])} | "
            f"{_cell(r['f1'])} | {r['completions'] / len(items):.1f} |"
        )
    lines += ["", "![chart](mc_power.png)", "", FINDINGS]
    if real is not None:
        lines += (
            [
                f"## The packaged model (`{DEFAULT_MODEL}`), one point",
                "",
                f"mc_binary, k={REAL_K}, max_tokens={REAL_MAX_TOKENS}, on the first {real['n']} solutions; vLLM on CPU "
                f"({os.cpu_count()} cores; CPU flags: {cpu_flags()}). Engine start {real['engine_s']:.0f} s, "
                f"labelling {real['label_s']:.0f} s. Labels `unknown` because the completer never reached the gold "
                f"on the problem: {real['never_reached_labels']}.",
                "",
                "| rule | `incorrect` precision | # incorrect | recall | `correct` precision | `correct` direct "
                "| coverage | completions |",
                "|---|---|---|---|---|---|---|---|",
            ]
            + [
                f"| {rule} | {_cell(s['incorrect_precision'])} | {s['incorrect_labels']} | {_cell(s['incorrect_recall'])} | "
                f"{_cell(s['correct_precision'])} | {_cell(s['correct_precision_direct'])} | {_cell(s['coverage'])} | "
                f"{s['completions']} |"
                for rule, s in real["rules"].items()
            ]
            + [""]
        )
    lines += [f"Bench time {seconds:.0f} s. Reproduce: `{command}`"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solutions", type=int, default=None, help="first N solutions (default: all)")
    parser.add_argument("--real", type=int, default=0, help="also label N solutions with the packaged model")
    args = parser.parse_args()
    started = time.perf_counter()
    items, labels = load_items(args.solutions)
    rows = run_grid(items, labels)
    real = run_real(items, labels, args.real) if args.real else None
    command = ".venv/bin/python bench/mc_power.py" + "".join(
        f" --{name} {value}" for name, value in vars(args).items() if value
    )
    text = report(rows, items, labels, real, time.perf_counter() - started, command)
    REPORT.write_text(text)
    write_chart(rows)
    print(text)


if __name__ == "__main__":
    main()
