"""FOLIO-like first-order logic problems: a procedural generator and a record importer.

Pure functions (no Prefect, no I/O). A generated problem is a derivation chain from
one fact about a person through `depth` linked rules, hidden among shuffled
distractor premises. Each link is one of: universal implication, conjunctive
antecedent, disjunction elimination, modus tollens, exclusive-or elimination,
conjunctive consequent. The conclusion is the chain's end (label true), its
negation (false), or a claim the premises leave open (uncertain: affirming the
consequent, a disjunction branch, another person, an unrelated property).

Every label is checked with Z3 (`verifiers.logic.entailment`), and so is every
reference step, so a generator bug raises instead of producing a mislabelled problem.

`Problem.metadata` is the JSON object the `z3_logic` annotator reads:
`{"premises": [formula, ...], "conclusion": formula, "label": "true|false|uncertain"}`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass

from rmforge.schemas.records import Problem
from rmforge.verifiers.logic.entailment import LABELS, PremiseChecker, normalize_label

GOLD = {"true": "True", "false": "False", "uncertain": "Uncertain"}
MAX_DEPTH = 8  # bounded by the property pool (each link uses up to three properties)

PEOPLE = [
    "Rina", "Harry", "Mateo", "Aiko", "Priya", "Lars", "Fatima", "Tomas", "Greta", "Kwame",
    "Ingrid", "Yusuf", "Elena", "Bruno", "Mei", "Oscar", "Nadia", "Felix", "Leila", "Hugo",
    "Sven", "Chiara", "Dmitri", "Amelie", "Jonas", "Lucia", "Ravi", "Tessa", "Emil", "Noor",
]  # fmt: skip


@dataclass(frozen=True)
class Property:
    """A property of a person: a unary predicate, or a binary one with a fixed object."""

    pred: str
    vp: str  # verb phrase: "is a student"
    neg_vp: str  # its negation: "is not a student"
    obj: str | None = None

    def atom(self, subject: str) -> str:
        return f"{self.pred}({subject}, {self.obj})" if self.obj else f"{self.pred}({subject})"


def _is(pred: str, phrase: str) -> Property:
    return Property(pred, f"is {phrase}", f"is not {phrase}")


def _does(pred: str, verb: str, base: str, obj: str | None = None) -> Property:
    return Property(pred, verb, f"does not {base}", obj)


PROPERTIES: list[Property] = [
    _is("Student", "a student"), _is("Teacher", "a teacher"), _is("Athlete", "an athlete"),
    _is("Musician", "a musician"), _is("Doctor", "a doctor"), _is("Artist", "an artist"),
    _is("Writer", "a writer"), _is("Engineer", "an engineer"), _is("Scientist", "a scientist"),
    _is("Chef", "a chef"), _is("Pilot", "a pilot"), _is("Farmer", "a farmer"),
    _is("Smart", "smart"), _is("Tall", "tall"), _is("Kind", "kind"), _is("Brave", "brave"),
    _is("Curious", "curious"), _is("Busy", "busy"), _is("Happy", "happy"), _is("Rich", "rich"),
    _is("Famous", "famous"), _is("Healthy", "healthy"), _is("Calm", "calm"), _is("Funny", "funny"),
    _is("Polite", "polite"), _is("Creative", "creative"), _is("Patient", "patient"),
    _is("Honest", "honest"), _is("Young", "young"), _is("Organized", "organized"),
    _is("DependentOnCaffeine", "dependent on caffeine"), _is("Vegetarian", "a vegetarian"),
    _does("Sings", "sings", "sing"), _does("Dances", "dances", "dance"), _does("Swims", "swims", "swim"),
    _does("Cooks", "cooks", "cook"), _does("Gardens", "gardens", "garden"),
    _does("Likes", "likes jazz", "like jazz", "jazz"), _does("Likes", "likes tea", "like tea", "tea"),
    _does("Owns", "owns a bicycle", "own a bicycle", "bicycle"), _does("Owns", "owns a car", "own a car", "car"),
    _does("LivesIn", "lives in Paris", "live in Paris", "paris"),
    _does("LivesIn", "lives in Tokyo", "live in Tokyo", "tokyo"),
    _does("Plays", "plays chess", "play chess", "chess"), _does("Plays", "plays the piano", "play the piano", "piano"),
    _does("Drinks", "regularly drinks coffee", "regularly drink coffee", "coffee"),
    _does("Visits", "visits the museum", "visit the museum", "museum"),
    _does("WorksAt", "works at the hospital", "work at the hospital", "hospital"),
    _does("WorksAt", "works at the library", "work at the library", "library"),
    _does("Reads", "reads novels", "read novels", "novels"),
]  # fmt: skip


@dataclass(frozen=True)
class PropLiteral:
    prop: Property
    positive: bool = True

    def negate(self) -> PropLiteral:
        return PropLiteral(self.prop, not self.positive)

    def formula(self, subject: str) -> str:
        atom = self.prop.atom(subject)
        return atom if self.positive else f"¬{atom}"

    def text(self) -> str:
        return self.prop.vp if self.positive else self.prop.neg_vp


@dataclass(frozen=True)
class Premise:
    formula: str
    text: str


@dataclass
class _Builder:
    """Accumulates one problem's premises and derivation."""

    rng: random.Random
    pool: list[Property]  # unused properties, drawn without replacement
    subject: str  # display name
    premises: list[Premise]
    steps: list[str]
    branches: list[PropLiteral]  # disjunction branches: natural "uncertain" targets

    @property
    def const(self) -> str:
        return self.subject.lower()

    def fresh(self, positive: bool | None = None) -> PropLiteral:
        prop = self.pool.pop()
        return PropLiteral(prop, self.rng.random() < 0.7 if positive is None else positive)

    def fact(self, lit: PropLiteral, person: str | None = None) -> None:
        person = person or self.subject
        self.premises.append(Premise(lit.formula(person.lower()), f"{person} {lit.text()}."))

    def rule(self, formula: str, text: str) -> None:
        self.premises.append(Premise(formula, text))

    def implication(self, src: PropLiteral, dst: PropLiteral) -> None:
        self.rule(f"∀x ({src.formula('x')} → {dst.formula('x')})", f"Everyone who {src.text()} {dst.text()}.")

    # -- links: each takes the current literal (true of the subject) to a new one
    def link(self, cur: PropLiteral) -> PropLiteral:
        kind = self.rng.choice(["implies", "implies", "and", "or", "tollens", "xor", "both"])
        a = self.const
        if kind == "implies":
            new = self.fresh()
            self.implication(cur, new)
            self.steps.append(new.formula(a))
            return new
        if kind == "and":
            extra, new = self.fresh(), self.fresh()
            self.fact(extra)
            self.rule(
                f"∀x ({cur.formula('x')} ∧ {extra.formula('x')} → {new.formula('x')})",
                f"Everyone who {cur.text()} and {extra.text()} {new.text()}.",
            )
            self.steps += [f"{cur.formula(a)} ∧ {extra.formula(a)}", new.formula(a)]
            return new
        if kind == "or":
            left, right, new = self.fresh(True), self.fresh(True), self.fresh()
            self.rule(
                f"∀x ({cur.formula('x')} → ({left.formula('x')} ∨ {right.formula('x')}))",
                f"Everyone who {cur.text()} either {left.text()} or {right.text()}.",
            )
            for branch in (left, right):
                self.implication(branch, new)
            self.steps += [f"{left.formula(a)} ∨ {right.formula(a)}", new.formula(a)]
            self.branches += [left, right]
            return new
        if kind == "tollens":
            other = self.fresh()
            bad = cur.negate()
            self.implication(other, bad)
            new = other.negate()
            self.steps.append(new.formula(a))
            return new
        if kind == "xor":
            left, right = self.fresh(True), self.fresh(True)
            right_fact = PropLiteral(right.prop, self.rng.random() < 0.5)
            self.fact(right_fact)
            self.rule(
                f"∀x ({cur.formula('x')} → ({left.formula('x')} ⊕ {right.formula('x')}))",
                f"Everyone who {cur.text()} either {left.text()} or {right.text()}, but not both.",
            )
            new = left.negate() if right_fact.positive else left  # exactly one of the two holds
            self.steps += [f"{left.formula(a)} ⊕ {right.formula(a)}", new.formula(a)]
            return new
        first, second = self.fresh(), self.fresh()  # "both": conjunctive consequent
        self.rule(
            f"∀x ({cur.formula('x')} → ({first.formula('x')} ∧ {second.formula('x')}))",
            f"Everyone who {cur.text()} {first.text()} and {second.text()}.",
        )
        self.steps += [f"{first.formula(a)} ∧ {second.formula(a)}", second.formula(a)]
        return second

    def distractor(self, other_person: str, chain: list[PropLiteral]) -> None:
        kind = self.rng.choice(["fact", "rule", "exists", "offshoot"])
        if kind == "fact":
            self.fact(self.fresh(), other_person)
        elif kind == "rule":
            p, q = self.fresh(), self.fresh()
            self.implication(p, q)
        elif kind == "exists":
            p, q = self.fresh(True), self.fresh()
            self.rule(f"∃x ({p.formula('x')} ∧ {q.formula('x')})", f"Someone {p.text()} and {q.text()}.")
        else:  # reachable from the chain, but leading nowhere useful
            src, q = self.rng.choice(chain), self.fresh()
            self.implication(src, q)


def _conclusion(b: _Builder, label: str, final: PropLiteral, other_person: str) -> tuple[str, str]:
    """(formula, sentence) of a conclusion whose label is `label`."""
    a, name, rng = b.const, b.subject, b.rng
    if label == "true":
        if rng.random() < 0.25:
            extra = b.fresh()
            return f"{final.formula(a)} ∨ {extra.formula(a)}", f"{name} {final.text()} or {extra.text()}."
        return final.formula(a), f"{name} {final.text()}."
    if label == "false":
        wrong = final.negate()
        if rng.random() < 0.25:
            extra = b.fresh()
            return f"{wrong.formula(a)} ∧ {extra.formula(a)}", f"{name} {wrong.text()} and {extra.text()}."
        return wrong.formula(a), f"{name} {wrong.text()}."
    kinds = ["converse", "person", "unrelated"] + (["branch", "branch"] if b.branches else [])
    kind = rng.choice(kinds)
    if kind == "branch":
        lit = rng.choice(b.branches)
        return lit.formula(a), f"{name} {lit.text()}."
    if kind == "person":
        return final.formula(other_person.lower()), f"{other_person} {final.text()}."
    cause = b.fresh()
    if kind == "converse":  # affirming the consequent: cause → final, final holds, cause?
        b.implication(cause, final)
    else:
        effect = b.fresh()
        b.implication(cause, effect)
    return cause.formula(a), f"{name} {cause.text()}."


def render_question(
    premises: Sequence[str],
    conclusion: str,
    premises_nl: Sequence[str] | None = None,
    conclusion_nl: str | None = None,
) -> str:
    """Premises (sentence and formula), the conclusion, and the three-way question."""
    lines = ["Premises:"]
    for i, formula in enumerate(premises, start=1):
        if premises_nl:
            lines += [f"{i}. {premises_nl[i - 1]}", f"   FOL: {formula}"]
        else:
            lines.append(f"{i}. {formula}")
    if conclusion_nl:
        lines += [f"Conclusion: {conclusion_nl}", f"   FOL: {conclusion}"]
    else:
        lines.append(f"Conclusion: {conclusion}")
    lines += ["", "Based only on the premises, is the conclusion True, False, or Uncertain?"]
    return "\n".join(lines)


def _verify(premises: list[str], conclusion: str, label: str, steps: list[str]) -> None:
    """Z3 must agree with the constructed label, and must prove each reference step."""
    checker = PremiseChecker(premises)  # one solver for the conclusion and every step
    result = checker.label(conclusion)
    if result.verdict != label:
        raise AssertionError(
            f"generated label {label!r} but Z3 says {result.verdict!r} ({result.reason}) for "
            f"premises {premises} and conclusion {conclusion!r}"
        )
    for step in steps:
        if checker.entails(step) is not True:
            raise AssertionError(f"reference step {step!r} is not entailed by premises {premises}")


def _generate_one(rng: random.Random, label: str, depth: int, verify: bool) -> Problem:
    subject, other = rng.sample(PEOPLE, 2)
    pool = PROPERTIES[:]
    rng.shuffle(pool)
    b = _Builder(rng=rng, pool=pool, subject=subject, premises=[], steps=[], branches=[])
    cur = b.fresh()
    b.fact(cur)
    chain = [cur]
    for _ in range(depth):
        cur = b.link(cur)
        chain.append(cur)
    conclusion, conclusion_nl = _conclusion(b, label, cur, other)
    for _ in range(rng.randint(1, 3)):
        b.distractor(other, chain[:-1])
    premises = b.premises[:]
    rng.shuffle(premises)  # FOLIO premises are not in derivation order
    formulas = [p.formula for p in premises]
    if verify:
        _verify(formulas, conclusion, label, b.steps)
    question = render_question(formulas, conclusion, [p.text for p in premises], conclusion_nl)
    gold = GOLD[label]
    return Problem(
        problem_id=Problem.make_id(question, gold),
        question=question,
        gold_answer=gold,
        source="generated:logic",
        domain="logic",
        difficulty=depth,
        reference_steps=b.steps,
        metadata=json.dumps({"premises": formulas, "conclusion": conclusion, "label": label}, ensure_ascii=False),
    )


def generate_logic_problems(
    count: int, seed: int = 0, min_depth: int = 1, max_depth: int = 3, *, verify: bool = True
) -> list[Problem]:
    """`count` distinct problems, deterministic in `seed`; labels cycle through
    true/false/uncertain in a seeded order per block of three, so any prefix is
    balanced. Problem i depends only on (seed, i): a larger count extends a smaller one."""
    if count < 0:
        raise ValueError("count must be >= 0")
    if not 1 <= min_depth <= max_depth <= MAX_DEPTH:
        raise ValueError(f"need 1 <= min_depth <= max_depth <= {MAX_DEPTH}")
    problems: list[Problem] = []
    seen: set[str] = set()
    for index in range(count):
        order = random.Random(f"rmforge-logic:{seed}:labels:{index // 3}").sample(LABELS, 3)
        label = order[index % 3]
        for attempt in range(100):
            rng = random.Random(f"rmforge-logic:{seed}:{index}:{attempt}")
            problem = _generate_one(rng, label, rng.randint(min_depth, max_depth), verify)
            if problem.problem_id not in seen:
                break
        else:  # pragma: no cover - the vocabulary makes collisions vanishingly rare
            raise RuntimeError(f"could not generate a distinct problem {index}")
        seen.add(problem.problem_id)
        problems.append(problem)
    return problems


def logic_problem_from_record(
    premises: Sequence[str] | str,
    conclusion: str,
    label: str | bool | None = None,
    source: str = "folio",
    *,
    premises_nl: Sequence[str] | str | None = None,
    conclusion_nl: str | None = None,
) -> Problem:
    """A Problem from a FOLIO-style record: premise formulas (a list, or one
    newline-separated string as in FOLIO's `premises-FOL`), a conclusion formula and an
    optional label (True/False/Uncertain; FOLIO's "Unknown" means uncertain). The
    formulas are stored as given; unparsable ones surface later as "unknown" labels."""
    if isinstance(premises, str):
        premises = [line for line in premises.splitlines() if line.strip()]
    formulas = [p.strip() for p in premises]
    if not formulas or not conclusion.strip():
        raise ValueError("a logic problem needs premises and a conclusion")
    if isinstance(premises_nl, str):
        premises_nl = [line for line in premises_nl.splitlines() if line.strip()]
    if premises_nl is not None and len(premises_nl) != len(formulas):
        premises_nl = None  # FOLIO's NL and FOL premise lists do not always align
    norm = None
    if label is not None:
        norm = normalize_label(label)
        if norm is None:
            raise ValueError(f"unrecognised label {label!r}; expected True, False, Uncertain or Unknown")
    meta: dict[str, object] = {"premises": formulas, "conclusion": conclusion.strip()}
    if norm is not None:
        meta["label"] = norm
    question = render_question(formulas, conclusion.strip(), premises_nl, conclusion_nl)
    gold = GOLD[norm] if norm else None
    return Problem(
        problem_id=Problem.make_id(question, gold),
        question=question,
        gold_answer=gold,
        source=source,
        domain="logic",
        metadata=json.dumps(meta, ensure_ascii=False),
    )
