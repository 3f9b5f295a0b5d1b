"""Importers: problems and rollouts from JSONL/JSON/Parquet files and Hugging Face datasets.

Every input record ends up either parsed or quarantined with the field at fault and
a reason (`parse_rows`); nothing is dropped silently. Pure functions over rows, plus
the file readers at the edge.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from pydantic import ValidationError

from rmforge.schemas.errors import UserError
from rmforge.schemas.records import (
    VERDICTS,
    Domain,
    Problem,
    QuarantineRecord,
    Rollout,
    Step,
    Verdict,
    stable_hash,
)

T = TypeVar("T")

_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.S)
_CALCULATOR = re.compile(r"<<[^>]*>>")
# Windows tools start UTF-8 files with it; it is no part of the first record.
_BOM = codecs.BOM_UTF8


def split_gsm8k_answer(answer: str) -> tuple[str, list[str]]:
    """GSM8K answers hold the rationale, then `#### 72`: gold and reference steps."""
    match = _GSM8K_FINAL.search(answer)
    if not match:
        return answer.strip(), []
    rationale = answer[: match.start()]
    steps = [line.strip() for line in rationale.splitlines() if line.strip()]
    return match.group(1).replace(",", "").strip(), steps


@dataclass
class ImportResult:
    problems: list[Problem] = field(default_factory=list)
    quarantine: list[QuarantineRecord] = field(default_factory=list)


def quarantine_record(source: str, ref: str, field_name: str, reason: str, raw: Any, run_id: str) -> QuarantineRecord:
    raw_text = raw if isinstance(raw, str) else json.dumps(raw, default=str, ensure_ascii=False)
    # Kept verbatim where the store can hold it; lone surrogates are written escaped.
    raw_text = raw_text.encode("utf-8", "backslashreplace").decode("utf-8")
    return QuarantineRecord(
        quarantine_id=stable_hash("quarantine", source, ref, reason),
        source=source,
        record_ref=ref,
        field=field_name,
        reason=reason,
        raw=raw_text[:10_000],
        run_id=run_id,
    )


def validation_field(error: ValidationError) -> tuple[str, str]:
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "record"
    return loc, f"{loc}: {first['msg']}"


def problem_from_record(
    record: dict[str, Any], source: str, question_field: str = "question", answer_field: str = "answer"
) -> Problem:
    """One imported row -> Problem. Raises ValueError naming the field at fault.

    FOLIO-style records (`premises-FOL`, `conclusion-FOL`, `label`) become logic problems
    that keep their premise and conclusion formulas for the `z3_logic` annotator.
    """
    if "premises-FOL" in record or "conclusion-FOL" in record:
        return folio_problem(record, source)
    question = record.get(question_field)
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"{question_field}: missing or empty question")
    gold = gold_field(record, answer_field if answer_field in record else "gold_answer")
    steps: list[str] = []
    if gold is not None:
        gold, steps = split_gsm8k_answer(gold)
        steps = [_CALCULATOR.sub("", s) for s in steps]
    given_id = record.get("problem_id") or record.get("id")
    return Problem(
        problem_id=str(given_id) if given_id else Problem.make_id(question, gold),
        question=question.strip(),
        gold_answer=gold,
        source=source,
        domain=record.get("domain", "math"),
        difficulty=record.get("difficulty") if isinstance(record.get("difficulty"), int) else None,
        reference_steps=steps,
    )


@dataclass(frozen=True)
class Unreadable:
    """An input line that could not be read as a record, kept verbatim for the quarantine."""

    raw: str
    reason: str


# A record as read: its line (or item / row) number in the file and its value.
NumberedRow = tuple[int, Any]


class InputFileError(UserError, ValueError):
    """The input file as a whole cannot be imported (a folder, empty, unreadable)."""


def folio_problem(record: dict[str, Any], source: str) -> Problem:
    from rmforge.problems.logic import logic_problem_from_record

    premises = record.get("premises-FOL")
    conclusion = text_field(record, "conclusion-FOL", required=True)
    if not isinstance(premises, (str, list)) or not premises:
        raise ValueError("premises-FOL: expected a list of formulas or one string, one per line")
    label = record.get("label")
    try:
        problem = logic_problem_from_record(
            premises, conclusion, label, source,
            premises_nl=record.get("premises"), conclusion_nl=text_field(record, "conclusion"),
        )
    except ValueError as exc:
        raise ValueError(f"label: {exc}" if label is not None and "label" in str(exc) else f"premises-FOL: {exc}") from None
    given_id = record.get("problem_id") or (record.get("story_id") and f"folio-{record.get('story_id')}-{record.get('example_id')}")
    return problem.model_copy(update={"problem_id": str(given_id)}) if given_id else problem


def read_records(path: Path) -> list[NumberedRow]:
    """Numbered records of a JSONL, JSON (an array of objects) or Parquet file, all at once
    (for files that fit in memory: problem sets, evaluation sets)."""
    return [row for chunk in iter_record_chunks(path) for row in chunk]


def iter_record_chunks(path: Path, rows_per_chunk: int = 5_000) -> Iterator[list[NumberedRow]]:
    """Numbered records of a JSONL, JSON or Parquet file, `rows_per_chunk` at a time.

    JSONL and Parquet are streamed, so memory follows the chunk, not the file; a JSON
    array is parsed whole (the format cannot be read in parts). Lines that are not valid
    UTF-8 or not JSON come back as `Unreadable` (with the raw line), so the caller
    quarantines them and the valid rows are still imported.
    """
    check_records_file(path)
    if path.suffix == ".parquet":
        rows: Iterator[NumberedRow] = _parquet_rows(path, rows_per_chunk)
    elif _first_byte(path) == b"[":
        rows = iter(_json_array(path, path.read_bytes()))
    else:
        rows = _jsonl_rows(path)
    empty = True
    while chunk := list(islice(rows, rows_per_chunk)):
        empty = False
        yield chunk
    if empty:
        raise InputFileError(f"{path} holds no records")


def check_records_file(path: Path) -> None:
    """Raise InputFileError for what makes a whole file unimportable and shows without reading
    it: a folder, a missing path, no records at all (only whitespace, a Parquet file of no rows
    or none at all). Commands call it before starting any work."""
    if path.is_dir():
        raise InputFileError(f"{path} is a folder, not a JSONL/JSON/Parquet file")
    if not path.exists():
        raise InputFileError(f"{path} does not exist")
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            empty = pq.ParquetFile(path).metadata.num_rows == 0
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputFileError(f"{path}: not a readable Parquet file ({exc})") from None
    else:
        empty = _first_byte(path) == b""
    if empty:
        raise InputFileError(f"{path} holds no records")


def count_records(path: Path) -> int:
    """How many records `iter_record_chunks` numbers up to (lines of a JSONL file, rows of a
    Parquet file), read without parsing: a progress bar's total. 0 when it cannot tell
    cheaply (a JSON array, a path that is no file: the reader reports that)."""
    if not path.is_file() or (path.suffix != ".parquet" and _first_byte(path) == b"["):
        return 0
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    newlines, last = 0, b"\n"
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            newlines, last = newlines + block.count(b"\n"), block[-1:]
    return newlines + (last != b"\n")


def _first_byte(path: Path) -> bytes:
    """The first byte after any byte order mark and leading whitespace: b"[" for a JSON array."""
    with path.open("rb") as file:
        block = file.read(1 << 16).removeprefix(_BOM)
        while block:
            if stripped := block.lstrip():
                return stripped[:1]
            block = file.read(1 << 16)
    return b""


def _parquet_rows(path: Path, rows_per_chunk: int) -> Iterator[NumberedRow]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows_per_chunk):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def _json_array(path: Path, data: bytes) -> list[NumberedRow]:
    try:
        items = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path}: not a valid JSON array ({exc})") from None
    return list(enumerate(items, start=1))


def _jsonl_rows(path: Path) -> Iterator[NumberedRow]:
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            raw = raw.rstrip(b"\n").removeprefix(_BOM if number == 1 else b"")
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                text = raw.decode("utf-8", errors="backslashreplace")
                yield number, Unreadable(text, f"invalid UTF-8 at byte {exc.start} of the line")
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, Unreadable(line.rstrip("\r"), f"not valid JSON: {exc.msg}")


def parse_rows(
    rows: Sequence[Any], source: str, run_id: str, parse: Callable[[dict[str, Any], int], T | None]
) -> tuple[list[T], list[QuarantineRecord]]:
    """Apply `parse(row, number)` to each row; rows it rejects are quarantined with the field at fault.

    rows: records, or `(number, record)` pairs from `read_records`. `parse` raises
    pydantic's ValidationError, or ValueError("field: reason"); it returns None for a row
    that brings nothing new (an exact repeat of an earlier one), which it counts itself.
    """
    parsed: list[T] = []
    quarantine: list[QuarantineRecord] = []
    for index, item in enumerate(rows, start=1):
        number, row = item if isinstance(item, tuple) else (index, item)
        ref = f"{source}#{number}"
        if isinstance(row, Unreadable):
            quarantine.append(quarantine_record(source, ref, "record", row.reason, row.raw, run_id))
            continue
        if not isinstance(row, dict):
            quarantine.append(quarantine_record(source, ref, "record", "not a JSON object", row, run_id))
            continue
        try:
            record = parse(row, number)
        except ValidationError as exc:
            field_name, reason = validation_field(exc)
            quarantine.append(quarantine_record(source, ref, field_name, reason, row, run_id))
        except ValueError as exc:
            field_name = str(exc).split(":", 1)[0]
            quarantine.append(quarantine_record(source, ref, field_name, str(exc), row, run_id))
        else:
            if record is not None:
                parsed.append(record)
    return parsed, quarantine


def import_problem_rows(
    rows: Sequence[Any], source: str, run_id: str, question_field: str, answer_field: str
) -> ImportResult:
    problems, quarantine = parse_rows(
        rows, source, run_id, lambda row, _number: problem_from_record(row, source, question_field, answer_field)
    )
    return ImportResult(problems=problems, quarantine=quarantine)


def load_hf_rows(path: str, split: str) -> list[dict[str, Any]]:
    """A saved dataset folder (save_to_disk), a local data folder/script, or a hub id."""
    import datasets

    if Path(path, "dataset_info.json").exists() or Path(path, "dataset_dict.json").exists():
        loaded = datasets.load_from_disk(path)
        if isinstance(loaded, datasets.DatasetDict):
            loaded = loaded[split]
    else:
        loaded = datasets.load_dataset(path, split=split)
    return loaded.to_list()


# ------------------------------------------------------------------ rollouts


@dataclass
class RolloutImport:
    problems: list[Problem] = field(default_factory=list)
    rollouts: list[Rollout] = field(default_factory=list)
    # Steps given by the file (kept exactly as given); other rollouts are split later.
    steps: list[Step] = field(default_factory=list)
    quarantine: list[QuarantineRecord] = field(default_factory=list)
    # Rows that repeat an earlier row of the same rollout_id exactly: read, not imported twice.
    identical_repeats: int = 0
    # rollout_id -> the number of the record it was read from, for later checks to name it.
    record_numbers: dict[str, int] = field(default_factory=dict)


def step_texts_by_rollout(steps: Sequence[Step]) -> dict[str, list[str]]:
    """rollout_id -> its step texts in order."""
    texts: dict[str, list[str]] = {}
    for step in sorted(steps, key=lambda s: (s.rollout_id, s.step_index)):
        texts.setdefault(step.rollout_id, []).append(step.text)
    return texts


def rollout_mismatch(
    known: Rollout, known_steps: list[str] | None, incoming: Rollout, incoming_steps: list[str] | None
) -> str | None:
    """The field in which two records of one rollout_id disagree, if any. Steps count only where
    both records give them: steps split from the same response are the same."""
    for name in ("response", "problem_id", "model"):
        if getattr(known, name) != getattr(incoming, name):
            return name
    if known_steps is not None and incoming_steps is not None and known_steps != incoming_steps:
        return "steps"
    return None


class SeenRollouts:
    """The first record of each rollout_id in one read of rows. A later record of an id must
    repeat it exactly (then it is counted, not imported again) or is refused: storing both
    would merge them: the later response over a mix of both records' steps."""

    def __init__(self) -> None:
        self._first: dict[str, tuple[int, Rollout, list[str] | None, Any]] = {}
        self.identical_repeats = 0

    def is_repeat(self, rollout: Rollout, steps: list[Step] | None, labels: Any = None) -> bool:
        """True for an exact repeat of an accepted record; ValueError naming it for a different one.

        labels: what else a record carries that a repeat must match (human verdicts).
        """
        known = self._first.get(rollout.rollout_id)
        if known is None:
            return False
        number, first, first_steps, first_labels = known
        mismatch = rollout_mismatch(first, first_steps, rollout, _texts(steps)) or (
            "label" if labels != first_labels else None)
        if mismatch:
            raise ValueError(f"rollout_id: {rollout.rollout_id!r} repeats #{number} with a different {mismatch}")
        self.identical_repeats += 1
        return True

    def accept(self, number: int, rollout: Rollout, steps: list[Step] | None, labels: Any = None) -> None:
        self._first[rollout.rollout_id] = (number, rollout, _texts(steps), labels)

    def record_numbers(self) -> dict[str, int]:
        return {rollout_id: first[0] for rollout_id, first in self._first.items()}


def _texts(steps: list[Step] | None) -> list[str] | None:
    return None if steps is None else [step.text for step in steps]


@overload
def text_field(row: dict[str, Any], name: str, *, required: Literal[True]) -> str: ...
@overload
def text_field(row: dict[str, Any], name: str, *, required: bool = False) -> str | None: ...
def text_field(row: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    """A string field: missing is None (or an error when required); any other type is an error."""
    value = row.get(name)
    if value is None:
        if required:
            raise ValueError(f"{name}: missing")
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {_type_name(value)}")
    _check_unicode(name, value)
    if required and not value.strip():
        raise ValueError(f"{name}: empty")
    return value


def _check_unicode(name: str, value: str) -> None:
    """JSON may escape a lone surrogate (\\ud800): valid JSON, but no text the store can hold."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{name}: not valid Unicode (lone surrogate at character {exc.start})") from None


def _type_name(value: Any) -> str:
    return "a boolean" if isinstance(value, bool) else type(value).__name__


def gold_field(row: dict[str, Any], name: str = "gold_answer") -> str | None:
    """A gold answer as text; a number is kept as written, NaN and Infinity are refused
    (Python's JSON reader accepts them, and "nan" would be graded as an answer)."""
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{name}: expected a string or number, got {_type_name(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name}: {json.dumps(value)} is not a finite number")
    _check_unicode(name, str(value))
    return str(value)


def steps_field(row: dict[str, Any], name: str = "steps") -> list[str] | None:
    value = row.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ValueError(f"{name}: expected a non-empty list of strings")
    for index, step in enumerate(value):
        if not isinstance(step, str) or not step.strip():
            raise ValueError(f"{name}: item {index} is not a non-empty string")
        _check_unicode(name, step)
    return value


def domain_field(row: dict[str, Any]) -> Domain:
    """An imported row's domain, "math" when it names none."""
    match text_field(row, "domain") or "math":
        case "math" | "logic" as domain:
            return domain
    raise ValueError("domain: Input should be 'math' or 'logic'")  # as the Problem model words it


def rollout_from_row(row: dict[str, Any], run_id: str) -> tuple[Problem, Rollout, list[Step] | None]:
    """One imported row -> its problem, rollout and given steps (ValueError names the field)."""
    steps = steps_field(row)
    response = text_field(row, "response", required=steps is None)
    if response is None:  # ProcessBench / PRM800K style: the steps are the response
        response = "\n\n".join(steps or [])
    num_tokens = row.get("num_tokens")
    if num_tokens is not None and (isinstance(num_tokens, bool) or not isinstance(num_tokens, int)):
        raise ValueError(f"num_tokens: expected an integer, got {_type_name(num_tokens)}")
    problem = Problem(
        problem_id=text_field(row, "problem_id", required=True),
        question=text_field(row, "question", required=True),
        gold_answer=gold_field(row),
        source=text_field(row, "source") or "import",
        domain=domain_field(row),
    )
    model = text_field(row, "model") or "unknown"
    rollout = Rollout(
        rollout_id=text_field(row, "rollout_id") or stable_hash("import", problem.problem_id, model, response),
        problem_id=problem.problem_id,
        response=response,
        model=model,
        generator="import",
        finish_reason=text_field(row, "finish_reason"),
        num_tokens=num_tokens,
        run_id=run_id,
    )
    given = None
    if steps is not None:
        given = [Step(rollout_id=rollout.rollout_id, step_index=i, text=t) for i, t in enumerate(steps)]
    return problem, rollout, given


def parse_rollout_rows(rows: Sequence[Any], source: str, run_id: str) -> RolloutImport:
    """Validate imported rows; bad ones are quarantined with the field at fault.

    A problem_id repeated with another question or gold answer is refused: its rollout
    would be graded against the wrong problem.
    """
    seen_problems: dict[str, Problem] = {}
    seen_rollouts = SeenRollouts()
    given_steps: list[Step] = []

    def parse(row: dict[str, Any], number: int) -> Rollout | None:
        problem, rollout, steps = rollout_from_row(row, run_id)
        if seen_rollouts.is_repeat(rollout, steps):
            return None
        known = seen_problems.setdefault(problem.problem_id, problem)
        mismatch = problem_mismatch(known, problem)
        if mismatch:
            raise ValueError(f"{mismatch}: differs from an earlier row with problem_id {problem.problem_id!r}")
        seen_rollouts.accept(number, rollout, steps)
        given_steps.extend(steps or [])
        return rollout

    rollouts, quarantine = parse_rows(rows, source, run_id, parse)
    return RolloutImport(
        problems=list(seen_problems.values()), rollouts=rollouts, steps=given_steps, quarantine=quarantine,
        identical_repeats=seen_rollouts.identical_repeats, record_numbers=seen_rollouts.record_numbers(),
    )


def problem_mismatch(known: Problem, incoming: Problem) -> str | None:
    """The field in which two records of one problem_id disagree, if any."""
    if known.question.strip() != incoming.question.strip():
        return "question"
    if (known.gold_answer or "").strip() != (incoming.gold_answer or "").strip():
        return "gold_answer"
    return None


# ------------------------------------------------------------------ human-labelled data


@dataclass
class LabelledImport(RolloutImport):
    """Rollouts with human step verdicts (and, where the data has them, final-answer verdicts)."""

    reviewers: dict[str, str] = field(default_factory=dict)  # rollout_id -> who labelled it
    step_verdicts: dict[str, list[Verdict]] = field(default_factory=dict)  # rollout_id -> verdict per labelled step
    outcomes: dict[str, bool] = field(default_factory=dict)  # rollout_id -> final answer correct


def first_error_verdicts(first_error: Any, n_steps: int, field_name: str = "label") -> list[Verdict]:
    """ProcessBench convention: steps before the earliest wrong one are correct, it is
    incorrect, later steps stay unlabelled; -1 means every step is correct."""
    if isinstance(first_error, bool) or not isinstance(first_error, int) or not -1 <= first_error < n_steps:
        raise ValueError(f"{field_name}: expected -1 or a step index below {n_steps}, got {first_error!r}")
    if first_error == -1:
        return ["correct"] * n_steps
    before: list[Verdict] = ["correct"] * first_error
    return [*before, "incorrect"]


def verdict_option(name: str, value: str) -> Verdict:
    """An option's value as a verdict; ValueError names the option otherwise."""
    match value:
        case "correct" | "incorrect" | "unknown":
            return value
    raise ValueError(f"{name}: {value!r} is not one of {', '.join(VERDICTS)}")


def processbench_record(
    record: dict[str, Any], gold: dict[str, str], run_id: str
) -> tuple[Problem, Rollout, list[Step], list[Verdict], bool | None, str]:
    """One ProcessBench record (id, generator, problem, steps, final_answer_correct, label)."""
    record_id = text_field(record, "id", required=True)
    question = text_field(record, "problem", required=True)
    steps = steps_field(record) or []
    if not steps:
        raise ValueError("steps: missing")
    gold_answer = gold.get(record_id) if record_id in gold else gold_field(record, "gold_answer")
    row = {
        "problem_id": Problem.make_id(question, gold_answer),
        "question": question,
        "gold_answer": gold_answer,
        "steps": steps,
        "model": text_field(record, "generator") or "unknown",
        "rollout_id": record_id,
        "source": "processbench",
    }
    problem, rollout, given = rollout_from_row(row, run_id)
    verdicts = first_error_verdicts(record.get("label"), len(steps))
    final = record.get("final_answer_correct")
    if final is not None and not isinstance(final, bool):
        raise ValueError(f"final_answer_correct: expected a boolean, got {_type_name(final)}")
    return problem, rollout, given or [], verdicts, final, "processbench"


# Looked up by whatever JSON value a record's rating holds.
PRM800K_RATINGS: dict[object, Verdict] = {1: "correct", -1: "incorrect"}


def prm800k_record(
    record: dict[str, Any], neutral: Verdict, run_id: str
) -> tuple[Problem, Rollout, list[Step], list[Verdict], bool | None, str]:
    """One PRM800K record: the rated step chosen at each turn, ratings 1 / 0 / -1 (0 = neutral)."""
    question_block = record.get("question")
    label_block = record.get("label")
    if not isinstance(question_block, dict) or not isinstance(label_block, dict):
        raise ValueError("question: expected PRM800K's question and label objects")
    question = text_field(question_block, "problem", required=True)
    gold_answer = gold_field(question_block, "ground_truth_answer")
    texts: list[str] = []
    verdicts: list[Verdict] = []
    for turn, step in enumerate(label_block.get("steps") or []):
        completions = step.get("completions") or []
        chosen = step.get("chosen_completion")
        pick = step.get("human_completion") if chosen is None and step.get("human_completion") else (
            completions[chosen] if isinstance(chosen, int) and 0 <= chosen < len(completions) else
            (completions[0] if completions else None))
        if not isinstance(pick, dict) or not isinstance(pick.get("text"), str) or not pick["text"].strip():
            raise ValueError(f"label.steps: turn {turn} has no step text")
        rating = pick.get("rating")
        verdict = neutral if rating == 0 else PRM800K_RATINGS.get(rating)
        texts.append(pick["text"])
        if verdict is None or (verdicts and verdicts[-1] == "incorrect"):
            break  # an unrated step, or steps after the first wrong one, stay unlabelled
        verdicts.append(verdict)
    if not texts:
        raise ValueError("label.steps: no steps")
    labeler = text_field(record, "labeler") or "prm800k"
    row = {
        "problem_id": Problem.make_id(question, gold_answer),
        "question": question,
        "gold_answer": gold_answer,
        "steps": texts,
        "model": "prm800k",
        "rollout_id": stable_hash("prm800k", labeler, record.get("timestamp"), question, texts),
        "source": "prm800k",
    }
    problem, rollout, given = rollout_from_row(row, run_id)
    return problem, rollout, given or [], verdicts, None, labeler


LABELLED_FORMATS = ("processbench", "prm800k")


def parse_labelled_rows(
    rows: Sequence[Any],
    source: str,
    run_id: str,
    fmt: str,
    *,
    gold: dict[str, str] | None = None,
    neutral: str = "correct",
) -> LabelledImport:
    """Human-labelled solutions (ProcessBench or PRM800K format) -> rollouts + human verdicts."""
    if fmt not in LABELLED_FORMATS:
        raise ValueError(f"format: {fmt!r} is not one of {', '.join(LABELLED_FORMATS)}")
    neutral_verdict = verdict_option("neutral", neutral)
    result = LabelledImport()
    seen_problems: dict[str, Problem] = {}
    seen_rollouts = SeenRollouts()

    def parse(record: dict[str, Any], number: int) -> Rollout | None:
        if fmt == "processbench":
            problem, rollout, steps, verdicts, final, reviewer = processbench_record(record, gold or {}, run_id)
        else:
            problem, rollout, steps, verdicts, final, reviewer = prm800k_record(record, neutral_verdict, run_id)
        labels = (verdicts, final, reviewer)
        if seen_rollouts.is_repeat(rollout, steps, labels):
            return None
        seen_rollouts.accept(number, rollout, steps, labels)
        seen_problems.setdefault(problem.problem_id, problem)
        result.steps.extend(steps)
        result.reviewers[rollout.rollout_id] = reviewer
        result.step_verdicts[rollout.rollout_id] = verdicts
        if final is not None:
            result.outcomes[rollout.rollout_id] = final
        return rollout

    result.rollouts, result.quarantine = parse_rows(rows, source, run_id, parse)
    result.problems = list(seen_problems.values())
    result.identical_repeats, result.record_numbers = seen_rollouts.identical_repeats, seen_rollouts.record_numbers()
    return result


def read_gold_answers(path: Path) -> dict[str, str]:
    """A JSON object mapping record id -> gold final answer (e.g. ProcessBench's GSM8K golds)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path}: not a readable JSON object of gold answers ({exc})") from None
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: expected a JSON object mapping ids to gold answers")
    try:
        golds = {str(k): gold_field(data, k) for k in data}
        return {k: gold for k, gold in golds.items() if gold is not None}
    except ValueError as exc:
        raise InputFileError(f"{path}: {exc}") from None


def sibling_gold_answers(path: Path) -> Path | None:
    """`gsm8k.json` -> `gsm8k_gold_answers.json` beside it, when present."""
    candidate = path.with_name(f"{path.stem}_gold_answers.json")
    return candidate if candidate.exists() else None
