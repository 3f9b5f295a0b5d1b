"""Labels a reward model can trust: 30 hand-written rollouts through import -> annotate -> curate.

Found by the labels issue: with `answer` and `z3_arith`, complete solutions whose final
answer is wrong came out as all-correct process examples, because "no false arithmetic
claim" was read as "the step is right" and the wrong outcome counted against no step.
"""

from pathlib import Path

import pytest

from rmforge.annotators import annotator_class
from rmforge.annotators.base import AnnotationInput
from rmforge.annotators.human import HumanAnnotator
from rmforge.flows.annotate import annotate
from rmforge.flows.curate import curate
from rmforge.flows.import_rollouts import import_rollouts
from rmforge.schemas.records import Problem, Rollout
from rmforge.store import Store
from rmforge.tasks.datasets import WRONG_ANSWER_ALL_CORRECT

pytestmark = pytest.mark.slow  # Prefect flows end to end

ROLLOUTS = Path(__file__).resolve().parent.parent / "data" / "handwritten_rollouts.jsonl"
ANNOTATORS = ["answer", "z3_arith"]
WRONG_BUT_ALL_CORRECT = """
    SELECT problem_id, labels FROM process_examples JOIN outcome_labels USING (rollout_id)
    WHERE verdict = 'incorrect' AND list_bool_and(labels)
"""


def test_no_all_correct_example_from_a_wrong_answer_and_no_refute_only_confirmation(prefect_harness, db):
    assert import_rollouts(str(ROLLOUTS), db)["rollouts"] == 30
    annotate(db, ANNOTATORS)
    summary = curate(db, ANNOTATORS)
    with Store(db) as store:
        wrong = store.rows("SELECT count(*) AS n FROM outcome_labels WHERE verdict = 'incorrect'")[0]["n"]
        assert wrong >= 15  # the fixture is mostly wrong solutions, several with right arithmetic
        assert store.rows(WRONG_BUT_ALL_CORRECT) == []
        # every `correct` consensus is backed by an annotator that can confirm a step
        for row in store.rows("SELECT supporters FROM step_consensus WHERE verdict = 'correct'"):
            assert any(
                annotator_class(s.split(":")[0].split(" ")[0]).evidence.confirms_steps for s in row["supporters"]
            )
        assert store.rows("SELECT count(*) AS n FROM step_consensus WHERE verdict = 'correct'")[0]["n"] == 0
        # refutations do reach the dataset, each label naming its supporters
        examples = store.rows("SELECT labels, label_supporters FROM process_examples")
        assert examples and all(not any(e["labels"]) for e in examples)
        assert all(e["label_supporters"][-1] for e in examples)
        supporters = {s for e in examples for s in e["label_supporters"][-1]}
        assert supporters <= {"z3_arith", "answer (final answer)"} and "z3_arith" in supporters
        # pairs still come from verified outcomes
        pairs = store.rows("""
            SELECT c.verdict AS chosen, r.verdict AS rejected FROM preference_pairs p
            JOIN outcome_consensus c ON c.rollout_id = p.chosen_rollout_id
            JOIN outcome_consensus r ON r.rollout_id = p.rejected_rollout_id""")
        assert pairs and all(p["chosen"] == "correct" and p["rejected"] == "incorrect" for p in pairs)
    assert summary["datasets"]["no_process_example"]


def test_a_human_outranks_checkers_but_never_yields_all_correct_on_a_wrong_answer(prefect_harness, db):
    import_rollouts(str(ROLLOUTS), db)
    annotate(db, ANNOTATORS)
    with Store(db) as store:
        rows = store.rows("""
            SELECT r.*, o.verdict FROM rollouts r JOIN outcome_labels o USING (rollout_id)
            WHERE r.problem_id IN ('toulouse', 'wage') ORDER BY r.rollout_id""")
        problems = {p.problem_id: p for p in store.records(Problem, "SELECT * FROM problems")}
        steps = {}
        for s in store.rows("SELECT rollout_id, text FROM steps ORDER BY rollout_id, step_index"):
            steps.setdefault(s["rollout_id"], []).append(s["text"])
        human = HumanAnnotator({"reviewer": "ann"})
        labels = []
        for row in rows:  # the reviewer calls every step of these rollouts correct
            rollout = Rollout.model_validate({k: v for k, v in row.items() if k != "verdict"})
            item = AnnotationInput(
                problem=problems[rollout.problem_id], rollout=rollout, steps=steps[rollout.rollout_id]
            )
            labels += [human.step_label(item, i, "correct", "review") for i in range(len(item.steps))]
        store.write("step_labels", labels)
    summary = curate(db, ANNOTATORS)
    with Store(db) as store:
        examples = store.rows("""
            SELECT e.labels, o.verdict FROM process_examples e JOIN outcome_consensus o USING (rollout_id)
            WHERE e.problem_id IN ('toulouse', 'wage')""")
        assert examples and all(e["verdict"] == "correct" and all(e["labels"]) for e in examples)
        overruled = store.rows("""
            SELECT overruled FROM step_consensus WHERE list_contains(supporters, 'human:ann')
            AND len(overruled) > 0""")
        assert overruled  # the human outranked a refutation somewhere
    assert summary["datasets"]["no_process_example"][WRONG_ANSWER_ALL_CORRECT] >= 3
