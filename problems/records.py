"""Records of input files: reading them and their fields, quarantining the rows that fail.

Readers of JSONL, JSON (an array of objects) and Parquet files and of Hugging Face datasets, used by
every import (problems, rollouts, human-labelled data), decontamination, evaluation and the CLI.
Every input record ends up either parsed or quarantined with the field at fault and a reason
(`parse_rows`); nothing is dropped silently.
"""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from pydantic import ValidationError

from rmforge.schemas.errors import UserError
from rmforge.schemas.records import Domain, QuarantineRecord, stable_hash

T = TypeVar("T")

# Windows tools start UTF-8 files with it; it is no part of the first record.
_BOM = codecs.BOM_UTF8


@dataclass(frozen=True)
class Unreadable:
    """An input line that could not be read as a record, kept verbatim for the quarantine."""

    raw: str
    reason: str


# A record as read: its line (or item / row) number in the file and its value.
NumberedRow = tuple[int, Any]


class InputFileError(UserError, ValueError):
    """The input file as a whole cannot be imported (a folder, empty, unreadable)."""


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
    elif _is_json_array(path):
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
    if not path.is_file() or _is_json_array(path):
        return 0
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    newlines, last = 0, b"\n"
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            newlines, last = newlines + block.count(b"\n"), block[-1:]
    return newlines + (last != b"\n")


def _is_json_array(path: Path) -> bool:
    """A JSON array, read whole: a file that starts with `[`, unless its name says JSON Lines (one
    record per line, so a first line `[` is a malformed record to quarantine) or Parquet."""
    return path.suffix not in (".jsonl", ".parquet") and _first_byte(path) == b"["


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


# ------------------------------------------------------------------ rows and fields


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


def domain_field(row: dict[str, Any]) -> Domain:
    """An imported row's domain, "math" when it names none."""
    match text_field(row, "domain") or "math":
        case "math" | "logic" as domain:
            return domain
    raise ValueError("domain: Input should be 'math' or 'logic'")  # as the Problem model words it


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
        raise ValueError(f"{name}: expected a string, got {type_name(value)}")
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


def type_name(value: Any) -> str:
    return "a boolean" if isinstance(value, bool) else type(value).__name__


def gold_field(row: dict[str, Any], name: str = "gold_answer") -> str | None:
    """A gold answer as text; a number is kept as written, NaN and Infinity are refused
    (Python's JSON reader accepts them, and "nan" would be graded as an answer)."""
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{name}: expected a string or number, got {type_name(value)}")
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
