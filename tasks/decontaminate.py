"""Decontamination: drop problems that overlap an evaluation set.

Two tests, each recorded with its score in the `contamination` table:
- ngram: the share of the problem's word n-grams (n=13 by default, as in the
  GPT-3 and Llama reports) that occur in one eval item. A problem shorter than n
  words matches only an eval item with the very same words.
- embedding: cosine between the problem and its nearest eval item (catches
  paraphrases that share few long n-grams).

The dedupe tasks give contaminated problems, and their rollouts, the status
`contaminated`, so the curated datasets (built from `status = 'kept'`) leave them out.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from rmforge.curation.near_duplicates import EXACT_SEARCH_LIMIT, nearest
from rmforge.problems.records import load_hf_rows, read_records
from rmforge.schemas.config import CurationConfig
from rmforge.schemas.records import Contamination
from rmforge.store import Store
from rmforge.tasks.dedupe import cached_embeddings

QUESTION_FIELDS = ("problem", "question", "prompt", "query")
ID_FIELDS = ("id", "unique_id", "problem_id", "idx")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class EvalItem:
    item_id: str
    text: str


def _rows(source: str, split: str) -> Sequence[Any]:
    path = Path(source)
    if path.is_file() and path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # -sig: a byte order mark is no JSON
        return data[split] if isinstance(data, dict) and split in data else data
    if path.is_file():
        return [row for _, row in read_records(path)]
    try:
        return load_hf_rows(source, split)
    except Exception as exc:  # datasets raises many kinds; the user needs the source and the reason
        raise ValueError(f"decontaminate: cannot load evaluation set {source!r}: {exc}") from exc


def load_eval_items(source: str, split: str = "test") -> list[EvalItem]:
    """The questions of one evaluation set: a JSON/JSONL/Parquet file, a saved HF
    dataset folder, a data folder or a hub id (offline: only when cached)."""
    rows = _rows(source, split)
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"decontaminate: {source!r} holds no records")
    items = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise ValueError(f"decontaminate: {source}#{number}: record: not a JSON object")
        field = next((f for f in QUESTION_FIELDS if isinstance(row.get(f), str) and row[f].strip()), None)
        if field is None:
            raise ValueError(
                f"decontaminate: {source}#{number}: no question field (one of {', '.join(QUESTION_FIELDS)})"
            )
        item_id = next((str(row[f]) for f in ID_FIELDS if row.get(f) is not None), str(number - 1))
        items.append(EvalItem(item_id=item_id, text=row[field]))
    return items


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def word_ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


class NgramIndex:
    """Which eval items hold each word n-gram."""

    def __init__(self, items: Sequence[EvalItem], n: int) -> None:
        self.n = n
        self.postings: dict[tuple[str, ...], set[int]] = defaultdict(set)
        self.whole: dict[tuple[str, ...], int] = {}
        for index, item in enumerate(items):
            tokens = words(item.text)
            self.whole.setdefault(tuple(tokens), index)
            for gram in word_ngrams(tokens, n):
                self.postings[gram].add(index)

    def best_match(self, text: str) -> tuple[int, float, str] | None:
        """(eval item index, share of the text's n-grams found in it, one shared n-gram)."""
        tokens = words(text)
        grams = word_ngrams(tokens, self.n)
        if not grams:  # shorter than n words: only the very same words count
            index = self.whole.get(tuple(tokens)) if tokens else None
            return None if index is None else (index, 1.0, " ".join(tokens))
        unique = list(dict.fromkeys(grams))
        hits = Counter(index for gram in unique for index in self.postings.get(gram, ()))
        if not hits:
            return None
        index, shared = min(hits.items(), key=lambda kv: (-kv[1], kv[0]))
        evidence = next(g for g in unique if index in self.postings.get(g, ()))
        return index, shared / len(unique), " ".join(evidence)


def find_contamination(
    problems: Sequence[dict[str, Any]],
    eval_sets: dict[str, list[EvalItem]],
    config: CurationConfig,
    run_id: str,
    vectors_for: Callable[[list[str]], np.ndarray],
) -> list[Contamination]:
    """The best-matching eval item per (problem, eval set, method) above its threshold."""
    found = []
    problem_vectors = None
    for eval_set, items in eval_sets.items():
        index = NgramIndex(items, config.decontaminate_ngram)
        for problem in problems:
            match = index.best_match(problem["question"])
            if match and match[1] > config.decontaminate_ngram_threshold:
                found.append(
                    Contamination(
                        problem_id=problem["problem_id"],
                        eval_set=eval_set,
                        eval_item_id=items[match[0]].item_id,
                        method="ngram",
                        score=round(match[1], 4),
                        evidence=match[2],
                        run_id=run_id,
                    )
                )
        threshold = config.decontaminate_embedding_threshold
        if threshold is None or not problems:
            continue
        if problem_vectors is None:
            problem_vectors = vectors_for([p["question"] for p in problems])
        eval_vectors = vectors_for([item.text for item in items])
        exact = len(problems) * len(items) <= EXACT_SEARCH_LIMIT**2
        indices, sims = nearest(problem_vectors, eval_vectors, 1, exact)
        for problem, (item_index,), (sim,) in zip(problems, indices, sims):
            if item_index >= 0 and sim >= threshold:
                found.append(
                    Contamination(
                        problem_id=problem["problem_id"],
                        eval_set=eval_set,
                        eval_item_id=items[item_index].item_id,
                        method="embedding",
                        score=round(float(sim), 4),
                        evidence=items[item_index].text[:200],
                        run_id=run_id,
                    )
                )
    return found


@task(name="decontaminate-problems", cache_policy=NO_CACHE)
def decontaminate_problems(db: str, config: CurationConfig, run_id: str) -> dict[str, int]:
    """Rebuild `contamination` from the configured evaluation sets (empty when none)."""
    eval_sets = {source: load_eval_items(source, config.decontaminate_split) for source in config.decontaminate}
    with Store(db) as store:
        problems = store.rows("SELECT problem_id, question FROM problems ORDER BY problem_id")
    found = (
        find_contamination(problems, eval_sets, config, run_id, lambda texts: cached_embeddings(db, texts, config))
        if eval_sets
        else []
    )
    with Store(db) as store:
        store.replace_tables({"contamination": found})
    return {
        "eval_items": sum(map(len, eval_sets.values())),
        "contaminated_problems": len({c.problem_id for c in found}),
    }
