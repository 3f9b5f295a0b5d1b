"""Export curated datasets in training formats, each with a dataset card.

Formats (columns as the trainers expect them):
- `process`: TRL stepwise supervision (`prompt`, `completions`, `labels`) plus
  `soft_labels` (MC values) for regression-style PRM training.
- `preference`: TRL preference / OpenRLHF reward-model keys (`prompt`, `chosen`,
  `rejected`).
- `kto`: TRL unpaired preference (`prompt`, `completion`, `label`) from verified
  outcomes of kept rollouts.
- `critiques`: judge critiques (`prompt`, `response`, `critique`, `first_error_step`).
In the standard format prompts and completions are text (each prompt ends with a blank
line); in the conversational format they are TRL's chat messages (`process` stays text:
PRMTrainer reads text only). Each is written as Parquet, JSONL and a Hugging Face
`datasets` folder (save_to_disk); the card (README.md, a Hub dataset card) lists one
`load_dataset` config per non-empty dataset, and `rmforge_config.yaml` holds the settings
of the export and of the runs behind the data.

What each dataset is (its SQL, columns, label meaning, Hub task category) is one entry in
`schemas/exports.py`; its rows are `rmforge.exports.datasets`, its card `rmforge.exports.card`,
its files and the folder the export owns `rmforge.exports.files` (after an export the folder holds
this export's files and nothing else; a killed export leaves each file either old or new).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from rmforge.exports.card import dataset_card
from rmforge.exports.datasets import dataset_stats, fetch_dataset, step_separator
from rmforge.exports.files import (
    CARD,
    CONFIG_FILE,
    STAGING_PREFIX,
    ExportError,
    check_export,
    effective_config,
    exclusive,
    publish,
    write_dataset,
)
from rmforge.exports.provenance import export_provenance
from rmforge.schemas.config import ExportConfig
from rmforge.schemas.exports import EXPORTS
from rmforge.schemas.records import utc_now
from rmforge.store import Store


@task(name="export-datasets", cache_policy=NO_CACHE)
def export_datasets(
    db: str,
    out_dir: str,
    names: list[str] | None = None,
    run_id: str | None = None,
    settings: ExportConfig | None = None,
) -> dict[str, dict[str, object]]:
    """Write the datasets, their card, config and manifest into `out_dir`; returns stats per dataset."""
    settings = settings or ExportConfig()
    names = check_export(db, out_dir, names)
    out = Path(out_dir)
    stats: dict[str, dict[str, object]] = {}
    separator = None
    try:
        out.mkdir(parents=True, exist_ok=True)
        with exclusive(out), Store(db, read_only=True) as store:
            for leftover in out.glob(f"{STAGING_PREFIX}*"):  # from an export that was killed
                shutil.rmtree(leftover, ignore_errors=True)
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
            try:
                for name in names:
                    table = fetch_dataset(store, name, settings.format)
                    stats[name] = dataset_stats(name, table)
                    if (column := EXPORTS[name].step_column) is not None:
                        separator = step_separator(table, column)
                    write_dataset(staging, name, table)
                provenance = export_provenance(store)
                (staging / CONFIG_FILE).write_text(
                    effective_config(settings, names, separator, provenance, run_id), encoding="utf-8"
                )
                (staging / CARD).write_text(
                    dataset_card(stats, provenance, run_id, settings, separator), encoding="utf-8"
                )
                manifest = {
                    "format": "rmforge-export",
                    "version": 1,
                    "run_id": run_id,
                    "database": provenance["database"],
                    "exported_at": utc_now().isoformat(),
                    "dataset_format": settings.format,
                    "step_separator": separator,
                    "datasets": stats,
                }
                publish(staging, out, names, manifest)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise ExportError(f"cannot write the export: {exc.strerror or exc}", out) from exc
    return stats
