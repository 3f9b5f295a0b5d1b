"""Export curated datasets in training formats, each with a dataset card.

Formats (columns as the trainers expect them):
- `process`: TRL stepwise supervision (`prompt`, `completions`, `labels`) plus
  `soft_labels` (MC values) for regression-style PRM training.
- `preference`: TRL preference / OpenRLHF reward-model keys (`prompt`, `chosen`,
  `rejected`).
- `kto`: TRL unpaired preference (`prompt`, `completion`, `label`) from verified
  outcomes of kept rollouts.
- `critiques`: judge critiques (`prompt`, `response`, `critique`, `first_error_step`).
Each is written as Parquet, JSONL and a Hugging Face `datasets` folder
(save_to_disk).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.store import Store

EXPORTS: dict[str, str] = {
    "process": """
        SELECT prompt, completions, labels, soft_labels, rollout_id, problem_id, annotators
        FROM process_examples ORDER BY example_id""",
    "preference": """
        SELECT prompt, chosen, rejected, chosen_rollout_id, rejected_rollout_id, problem_id
        FROM preference_pairs ORDER BY pair_id""",
    "kto": """
        WITH outcome AS (
            SELECT rollout_id, verdict FROM outcome_labels WHERE annotator = 'answer'
            QUALIFY row_number() OVER (PARTITION BY rollout_id ORDER BY labeled_at DESC) = 1)
        SELECT p.question AS prompt, r.response AS completion, o.verdict = 'correct' AS label,
               r.rollout_id, r.problem_id
        FROM rollouts r JOIN problems p USING (problem_id) JOIN outcome o USING (rollout_id)
        LEFT JOIN rollout_curation c USING (rollout_id)
        WHERE o.verdict IN ('correct', 'incorrect') AND coalesce(c.status, 'kept') = 'kept'
        ORDER BY r.rollout_id""",
    "critiques": """
        SELECT p.question AS prompt, r.response, c.text AS critique, c.first_error_step,
               c.verdict, c.model, c.rollout_id
        FROM critiques c JOIN rollouts r USING (rollout_id) JOIN problems p USING (problem_id)
        ORDER BY c.critique_id""",
}


def dataset_stats(name: str, table: pa.Table) -> dict[str, object]:
    stats: dict[str, object] = {"rows": table.num_rows}
    columns = table.column_names
    if "problem_id" in columns:
        stats["problems"] = len(set(table.column("problem_id").to_pylist()))
    if name == "process" and table.num_rows:
        labels = [label for row in table.column("labels").to_pylist() for label in row]
        stats["steps"] = len(labels)
        stats["positive_step_fraction"] = round(sum(labels) / len(labels), 4)
        stats["mean_steps_per_example"] = round(len(labels) / table.num_rows, 2)
    if name == "kto" and table.num_rows:
        stats["desirable_fraction"] = round(sum(table.column("label").to_pylist()) / table.num_rows, 4)
    return stats


def dataset_card(stats: dict[str, dict[str, object]], db: Path) -> str:
    lines = [
        "# rmforge export",
        "",
        f"Built from `{db}`. Columns follow TRL's dataset formats; the preference set also",
        "uses OpenRLHF's default keys (`--chosen_key chosen --rejected_key rejected`).",
        "",
        "| dataset | format | stats |",
        "|---|---|---|",
    ]
    formats = {
        "process": "TRL stepwise supervision",
        "preference": "TRL preference / OpenRLHF RM",
        "kto": "TRL unpaired preference (KTO)",
        "critiques": "critique SFT",
    }
    for name, values in stats.items():
        lines.append(f"| {name} | {formats[name]} | {json.dumps(values)} |")
    lines += ["", "Files: `<dataset>.parquet`, `<dataset>.jsonl`, `hf/<dataset>/` (datasets.load_from_disk)."]
    return "\n".join(lines) + "\n"


@task(name="export-datasets", cache_policy=NO_CACHE)
def export_datasets(db: str, out_dir: str, names: list[str] | None = None) -> dict[str, dict[str, object]]:
    import datasets

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats: dict[str, dict[str, object]] = {}
    with Store(db, read_only=True) as store:
        for name in names or list(EXPORTS):
            sql = EXPORTS[name]
            table = store.arrow(sql)
            store.export_parquet(sql, out / f"{name}.parquet")
            store.export_jsonl(sql, out / f"{name}.jsonl")
            datasets.Dataset(table).save_to_disk(str(out / "hf" / name))
            stats[name] = dataset_stats(name, table)
        (out / "README.md").write_text(dataset_card(stats, store.path), encoding="utf-8")
    return stats
