"""A small store for the review tests: rollouts with several annotators' labels.

Rollouts, in the queue order they must come in:
- `disagree`: mc calls step 2 correct, z3_arith and the judge incorrect; consensus failed there;
- `flagged`: z3_arith (refute-only) flags step 1 that mc calls correct; consensus agreed;
- `hostile`: HTML and scripts planted in the question, response, a reason and a critique;
- three plain rollouts where everyone agrees (spot checks).
"""

from __future__ import annotations

from datetime import UTC, datetime

from rmforge.schemas.records import (
    Critique,
    OutcomeLabel,
    RunRecord,
    Step,
    StepConsensus,
    StepLabel,
    canonical_json,
)
from rmforge.store import Store
from tests.builders import make_problem, make_rollout

RUN = "test-run"
CURATE_RUN = "test-curate"
PLANTED = '<script>window.__pwned = 1; alert(1)</script><img src=x onerror="window.__pwned = 2; alert(2)">'


def step_label(rollout_id, index, annotator, verdict, *, score=None, reason=None, model=None):
    return StepLabel(
        rollout_id=rollout_id,
        step_index=index,
        annotator=annotator,
        annotator_version="1",
        config_hash=f"{annotator}-cfg",
        model=model,
        verdict=verdict,
        score=score,
        reason=reason,
        run_id=RUN,
    )


def outcome_label(rollout_id, annotator, verdict, *, predicted=None, reason=None):
    return OutcomeLabel(
        rollout_id=rollout_id,
        annotator=annotator,
        annotator_version="1",
        config_hash=f"{annotator}-cfg",
        verdict=verdict,
        predicted_answer=predicted,
        reason=reason,
        run_id=RUN,
    )


def consensus(rollout_id, index, verdict, agreed, votes):
    return StepConsensus(
        rollout_id=rollout_id,
        step_index=index,
        verdict=verdict,
        agreed=agreed,
        annotators=sorted(votes),
        votes=canonical_json(votes),
        run_id=CURATE_RUN,
    )


def build_review_store(db: str) -> dict[str, str]:
    """Write the rollouts above; returns {name: rollout_id}."""
    pens = make_problem("Sam has 3 pens and buys 4 more, then gives away 2. How many pens?", "5")
    cakes = make_problem("A baker makes 6 cakes a day for 3 days and sells 10. How many are left?", "8")
    hostile = make_problem(f"What is 2 + 2? {PLANTED}", "4")
    texts = {
        "disagree": (pens, ["3 + 4 = 7 pens.", "7 - 2 = 4 pens are left.", "The answer is \\boxed{4}"]),
        "flagged": (cakes, ["6 * 3 = 19 cakes.", "18 - 10 = 8 cakes are left.", "The answer is \\boxed{8}"]),
        "hostile": (hostile, [f"2 + 2 = 4 {PLANTED}", "The answer is \\boxed{4}"]),
        "plain-0": (pens, ["3 + 4 = 7.", "7 - 2 = 5.", "The answer is \\boxed{5}"]),
        "plain-1": (cakes, ["6 * 3 = 18.", "18 - 10 = 8.", "The answer is \\boxed{8}"]),
        "plain-2": (pens, ["Sam has 3 + 4 = 7 pens.", "He keeps 7 - 2 = 5.", "The answer is \\boxed{5}"]),
    }
    rollouts, steps = {}, []
    for index, (name, (problem, parts)) in enumerate(texts.items()):
        rollout = make_rollout(problem, "\n".join(parts), index=index)
        rollouts[name] = rollout
        steps += [Step(rollout_id=rollout.rollout_id, step_index=i, text=t) for i, t in enumerate(parts)]
    ids = {name: r.rollout_id for name, r in rollouts.items()}

    labels, outcomes, all_steps = {}, [], []

    def add(label: StepLabel) -> None:  # a later label of the same annotator replaces the default
        labels[(label.rollout_id, label.step_index, label.annotator)] = label

    for name, rollout_id in ids.items():
        parts = texts[name][1]
        answer = parts[-1].split("{")[1].rstrip("}")
        outcomes.append(
            outcome_label(
                rollout_id,
                "answer",
                "correct" if name != "disagree" else "incorrect",
                predicted=answer,
                reason="math-verify",
            )
        )
        for i in range(len(parts)):
            add(
                step_label(
                    rollout_id, i, "mc", "correct", score=0.75, reason="3 of 4 completions reach the gold answer"
                )
            )
            add(step_label(rollout_id, i, "z3_arith", "correct", score=1.0, reason="no false claim found"))
            all_steps.append((rollout_id, i))
    d, f, h = ids["disagree"], ids["flagged"], ids["hostile"]
    for label in [
        step_label(d, 1, "z3_arith", "incorrect", score=0.0, reason="7 - 2 = 4 is false (7 - 2 = 5)"),
        step_label(d, 1, "judge", "incorrect", reason="subtracts wrongly", model="judge-model"),
        step_label(d, 0, "judge", "correct", reason="adds the pens", model="judge-model"),
        step_label(f, 0, "z3_arith", "incorrect", score=0.0, reason="6 * 3 = 19 is false (6 * 3 = 18)"),
        step_label(h, 0, "judge", "correct", reason=f"fine {PLANTED}", model="judge-model"),
    ]:
        add(label)
    # Consensus as the last curation left it: failed on `disagree` step 2; on `flagged` step 1
    # the refutation won, so only the refute-only rule puts that rollout high in the queue.
    decided = {(d, 1): ("unknown", False), (f, 0): ("incorrect", True)}
    rows = [
        consensus(
            rollout_id,
            i,
            *decided.get((rollout_id, i), ("correct", True)),
            {a: label.verdict for (r, s, a), label in labels.items() if (r, s) == (rollout_id, i)},
        )
        for rollout_id, i in all_steps
    ]
    critiques = [
        Critique(
            critique_id=f"crit-{name}",
            rollout_id=ids[name],
            annotator="judge",
            model="judge-model",
            sample_index=0,
            first_error_step=step,
            verdict=verdict,
            text=text,
            run_id=RUN,
        )
        for name, step, verdict, text in [
            ("disagree", 1, "incorrect", "Step 2 says 7 - 2 = 4; it is 5."),
            ("hostile", -1, "correct", f"All fine. {PLANTED}"),
        ]
    ]
    with Store(db) as store:
        store.write("problems", [pens, cakes, hostile])
        store.write("rollouts", list(rollouts.values()))
        store.write("steps", steps)
        store.write("step_labels", list(labels.values()))
        store.write("outcome_labels", outcomes)
        store.write("step_consensus", rows)
        store.write("critiques", critiques)
        store.write(
            "runs",
            [
                RunRecord(
                    run_id=CURATE_RUN,
                    flow="curate",
                    config="{}",
                    status="completed",
                    finished_at=datetime(2026, 11, 28, 17, 30, tzinfo=UTC),
                )
            ],
        )
    return ids


def build_long_rollout(db: str, steps: int, *, index: int = 100) -> str:
    """Add one rollout of `steps` steps, each labelled by two annotators and curated;
    returns its id. `index` tells rollouts of one store apart."""
    problem = make_problem(f"Count to {steps}.", str(steps))
    parts = [f"{i} + 1 = {i + 1}." for i in range(steps)]
    rollout = make_rollout(problem, "\n".join(parts), index=index)
    rollout_id = rollout.rollout_id
    labels = [
        step_label(rollout_id, i, annotator, "correct", reason="fine")
        for i in range(steps)
        for annotator in ("mc", "z3_arith")
    ]
    votes = {"mc": "correct", "z3_arith": "correct"}
    with Store(db) as store:
        store.write("problems", [problem])
        store.write("rollouts", [rollout])
        store.write("steps", [Step(rollout_id=rollout_id, step_index=i, text=t) for i, t in enumerate(parts)])
        store.write("step_labels", labels)
        store.write("step_consensus", [consensus(rollout_id, i, "correct", True, votes) for i in range(steps)])
    return rollout_id


# Steps of the `math` rollout, by what each one checks.
MATH_STEPS = {
    "inline": "Half of the 120 pens is \\( \\frac{120}{2} = 60 \\).",
    "display": "So \\[ \\sqrt{x^2} = |x| \\] and $$\\sum_{i=1}^{n} i = \\frac{n(n+1)}{2}$$ with $x + 1 = 2$.",
    "bad": "Then \\( 2 \\times \\frac{1} \\) pens, which is wrong.",
    "hostile": (
        "\\(\\href{javascript:alert(1)}{click}\\) \\(\\url{javascript:alert(2)}\\) "
        f"\\(\\htmlClass{{x}}{{y}}\\) $<script>alert(3)</script>$ {PLANTED}"
    ),
    "boxed": "The answer is \\(\\boxed{40}\\), or \\boxed{40} for short.",
}
# GSM8K-style prose: every `$` here is money, none of it may become math.
PROSE_STEPS = [
    "Natalia sold clips for $2 each and $3 for a pack of two.",
    "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.",
    "She bought 3 shirts at $12 each and 2 pants at $20 each, so she spent 3*$12 + 2*$20 = $76.",
    "James pays $100/month and Mary pays $50/month, so together they pay $150/month.",
    "The prices were ($2)($3), i.e. $2,$3 or US$5 in all; a \\$4 fee is extra.",
]
# Money and math in one step: the money stays text, the formulas after it still render.
MIXED_STEP = "So $2 + $3 = $5, that is $a + b = 5$ with $a = 2$."
MATH_QUESTION = "Sam buys pens at $2 each and $3 a box. What is \\( \\frac{120}{2} \\)?"
MATH_CRITIQUE = "Step 1 is right: \\(\\frac{120}{2} = 60\\)."
MATH_REASON = "checks $x + 1 = 2$"


def build_math_store(db: str) -> dict[str, str]:
    """Two rollouts: `math` with formulas (and bad and hostile LaTeX) in its question, steps,
    a judge's reason and a critique; `prose` with dollar amounts, then `MIXED_STEP`.
    Returns {name: rollout_id}."""
    problems = {"math": make_problem(MATH_QUESTION, "60"), "prose": make_problem("How much did they spend?", "76")}
    texts = {"math": list(MATH_STEPS.values()), "prose": [*PROSE_STEPS, MIXED_STEP]}
    rollouts = {name: make_rollout(problems[name], "\n".join(parts)) for name, parts in texts.items()}
    steps = [
        Step(rollout_id=rollouts[name].rollout_id, step_index=i, text=t)
        for name, parts in texts.items()
        for i, t in enumerate(parts)
    ]
    math_id = rollouts["math"].rollout_id
    with Store(db) as store:
        store.write("problems", list(problems.values()))
        store.write("rollouts", list(rollouts.values()))
        store.write("steps", steps)
        store.write(
            "step_labels", [step_label(math_id, 0, "judge", "correct", reason=MATH_REASON, model="judge-model")]
        )
        store.write(
            "critiques",
            [
                Critique(
                    critique_id="crit-math",
                    rollout_id=math_id,
                    annotator="judge",
                    model="judge-model",
                    sample_index=0,
                    first_error_step=-1,
                    verdict="correct",
                    text=MATH_CRITIQUE,
                    run_id=RUN,
                )
            ],
        )
    return {name: r.rollout_id for name, r in rollouts.items()}
