"""A run's report with a picture: annotator agreement, label balance and cost per stage.

Labels and consensus are counted over the whole store as the run leaves it; timings are the
run's own stages. The numbers are kept in the run's summary (`runs.summary`, key `report`)
so `rmforge report` prints exactly what the run saw, and drawn as a PNG next to the store
(`<db folder>/reports/<run_id>.png`, or under `$RMFORGE_REPORT_DIR`).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from rmforge.annotators import REGISTRY, annotator_class
from rmforge.schemas.records import utc_now
from rmforge.store import Store, resolve_store

REFUTE_ONLY_NOTE = "refute-only: its `correct` means no false claim found, not a confirmed step"


def report_dir(db: str) -> Path:
    """$RMFORGE_REPORT_DIR, else `reports/` beside the store (see StoreLocation.local_folder)."""
    return Path(os.environ.get("RMFORGE_REPORT_DIR") or resolve_store(db).local_folder / "reports")


def cohen_kappa(
    both_correct: int, both_incorrect: int, a_correct_b_incorrect: int, a_incorrect_b_correct: int
) -> float | None:
    """Cohen's kappa of two raters on the 2x2 correct/incorrect table (the formula of the
    `annotator_agreement` view); None when undefined: no items, or both raters constant alike."""
    n = both_correct + both_incorrect + a_correct_b_incorrect + a_incorrect_b_correct
    if n == 0:
        return None
    observed = (both_correct + both_incorrect) / n
    a_correct = (both_correct + a_correct_b_incorrect) / n
    b_correct = (both_correct + a_incorrect_b_correct) / n
    chance = a_correct * b_correct + (1 - a_correct) * (1 - b_correct)
    return None if chance == 1 else (observed - chance) / (1 - chance)


def refute_only(annotator: str) -> bool:
    """Whether a step `correct` from this annotator only means "found nothing false" (annotators.base.Evidence)."""
    if annotator not in REGISTRY:
        return False
    return annotator_class(annotator).evidence.refute_only


def pairwise_agreement(store: Store) -> list[dict[str, Any]]:
    """Every pair of annotators over the steps both decided (newest labels; `unknown` is no decision)."""
    rows = store.rows("""
        WITH decided AS (SELECT rollout_id, step_index, annotator, verdict FROM newest_step_labels
                         WHERE verdict <> 'unknown')
        SELECT a.annotator AS a, b.annotator AS b,
               count(*) FILTER (a.verdict = 'correct' AND b.verdict = 'correct') AS both_correct,
               count(*) FILTER (a.verdict = 'incorrect' AND b.verdict = 'incorrect') AS both_incorrect,
               count(*) FILTER (a.verdict = 'correct' AND b.verdict = 'incorrect') AS a_correct_b_incorrect,
               count(*) FILTER (a.verdict = 'incorrect' AND b.verdict = 'correct') AS a_incorrect_b_correct
        FROM decided a JOIN decided b USING (rollout_id, step_index)
        WHERE a.annotator < b.annotator
        GROUP BY a.annotator, b.annotator ORDER BY a.annotator, b.annotator
    """)
    for row in rows:
        cells = (row["both_correct"], row["both_incorrect"], row["a_correct_b_incorrect"], row["a_incorrect_b_correct"])
        row["steps"] = sum(cells)
        row["agreement"] = (cells[0] + cells[1]) / row["steps"]
        row["kappa"] = cohen_kappa(*cells)
    return rows


_COUNTS = """count(*) FILTER (verdict = 'correct') AS correct,
       count(*) FILTER (verdict = 'incorrect') AS incorrect,
       count(*) FILTER (verdict = 'unknown') AS unknown"""


def label_balance(store: Store) -> list[dict[str, Any]]:
    """Verdict counts per annotator (step labels, then outcome labels) and of the curated
    consensus; `agreed` counts the consensus steps decided (kept for datasets)."""
    rows = []
    for level, labels in (("step", "newest_step_labels"), ("outcome", "newest_outcome_labels")):
        for row in store.rows(f"SELECT annotator, {_COUNTS} FROM {labels} GROUP BY annotator ORDER BY annotator"):
            name = row.pop("annotator")
            rows.append(
                {
                    "labels": f"{level}: {name}",
                    **row,
                    "agreed": None,
                    "refute_only": level == "step" and refute_only(name),
                }
            )
    steps = store.rows(f"SELECT {_COUNTS}, count(*) FILTER (agreed) AS agreed FROM step_consensus")[0]
    outcomes = store.rows(f"SELECT {_COUNTS} FROM outcome_consensus")[0]
    rows.append({"labels": "consensus: steps", **steps, "refute_only": False})
    rows.append({"labels": "consensus: outcomes", **outcomes, "agreed": None, "refute_only": False})
    return rows


def stage_costs(
    store: Store, run_id: str, parent_run_id: str | None = None, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Seconds per stage: the run's sibling sub-flows when it runs inside a parent flow (the
    pipeline), else the run alone. Siblings are the runs this store saw start after the parent
    did (one writer per store at a time). A stage still running counts until `now`."""
    parent = store.rows("SELECT started_at FROM runs WHERE run_id = ?", [parent_run_id]) if parent_run_id else []
    if parent:
        rows = store.rows(
            "SELECT run_id, flow, status, started_at, finished_at FROM runs "
            "WHERE started_at >= ? AND run_id <> ? ORDER BY started_at",
            [parent[0]["started_at"], parent_run_id],
        )
    else:
        rows = store.rows("SELECT run_id, flow, status, started_at, finished_at FROM runs WHERE run_id = ?", [run_id])
    now = now or utc_now()
    return [
        {
            "stage": r["flow"],
            "run_id": r["run_id"],
            "status": r["status"],
            "seconds": round(((r["finished_at"] or now) - r["started_at"]).total_seconds(), 3),
        }
        for r in rows
    ]


def completions_per_annotator(store: Store) -> list[dict[str, Any]]:
    """LLM completions each annotator spent, over every rollout in the store."""
    return store.rows(
        "SELECT annotator, sum(completions)::BIGINT AS completions, count(*) AS rollouts "
        "FROM annotator_costs GROUP BY annotator ORDER BY annotator"
    )


def compute_report(store: Store, run_id: str, parent_run_id: str | None = None) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "parent_run_id": parent_run_id,
        "created_at": utc_now().isoformat(),
        "agreement": pairwise_agreement(store),
        "balance": label_balance(store),
        "stages": stage_costs(store, run_id, parent_run_id),
        "completions": completions_per_annotator(store),
    }


# ------------------------------------------------------------------ the picture


def _starred(name: str, refute_only_names: set[str]) -> str:
    return f"{name}*" if name in refute_only_names else name


def draw_report(report: dict[str, Any], path: Path) -> Path:
    """Four panels: kappa/agreement matrix, verdict balance, seconds per stage, completions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    starred = {row["labels"].split(": ", 1)[1] for row in report["balance"] if row["refute_only"]}
    fig, axes = plt.subplots(2, 2, figsize=(14, 10), gridspec_kw={"height_ratios": [1.25, 1]})
    inside = f" in pipeline run {report['parent_run_id'][:8]}" if report["parent_run_id"] else ""
    fig.suptitle(
        f"rmforge curate run {report['run_id'][:8]}{inside}, {report['created_at'][:19].replace('T', ' ')} UTC",
        fontsize=13,
    )
    _draw_agreement(axes[0][0], report["agreement"], starred)
    _draw_balance(axes[0][1], report["balance"])
    _draw_bars(
        axes[1][0],
        [(s["stage"], s["seconds"]) for s in report["stages"]],
        "seconds",
        "Cost: seconds per stage",
        "{:.1f} s",
    )
    _draw_bars(
        axes[1][1],
        [(c["annotator"], c["completions"]) for c in report["completions"]],
        "completions",
        "Cost: LLM completions per annotator (whole store)",
        "{:,}",
    )
    notes = [
        (
            "Labels and consensus: the whole store after this run; agreement over steps both annotators "
            "decided (newest label each; unknown left out)."
        )
    ]
    if starred:
        notes.append(f"* {', '.join(sorted(starred))}: {REFUTE_ONLY_NOTE}.")
    fig.text(0.01, 0.01, "\n".join(notes), fontsize=9, va="bottom")
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _draw_agreement(ax: Any, pairs: list[dict[str, Any]], starred: set[str]) -> None:
    ax.set_title("Annotator agreement on steps: Cohen's kappa (colour), agreement and steps")
    names = sorted({p["a"] for p in pairs} | {p["b"] for p in pairs})
    if not names:
        ax.text(0.5, 0.5, "no two annotators decided the same step", ha="center", va="center")
        ax.set_axis_off()
        return
    index = {name: i for i, name in enumerate(names)}
    matrix = [[float("nan")] * len(names) for _ in names]
    for p in pairs:
        i, j = index[p["a"]], index[p["b"]]
        kappa = p["kappa"]
        matrix[i][j] = matrix[j][i] = kappa if kappa is not None else float("nan")
        text = f"κ {kappa:.2f}" if kappa is not None else "κ n/a"
        for x, y in ((j, i), (i, j)):
            ax.text(x, y, f"{text}\n{p['agreement']:.0%} of {p['steps']}", ha="center", va="center", fontsize=9)
    image = ax.imshow(matrix, cmap="RdYlGn", vmin=-1, vmax=1)
    labels = [_starred(n, starred) for n in names]
    ax.set_xticks(range(len(names)), labels, rotation=20, ha="right")
    ax.set_yticks(range(len(names)), labels)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="Cohen's kappa")


def _draw_balance(ax: Any, balance: list[dict[str, Any]]) -> None:
    ax.set_title("Label balance per annotator and of the consensus")
    if not balance:
        ax.text(0.5, 0.5, "no labels", ha="center", va="center")
        ax.set_axis_off()
        return
    names = []
    for row in balance:
        name = row["labels"] + ("*" if row["refute_only"] else "")
        total = row["correct"] + row["incorrect"] + row["unknown"]
        if row["agreed"] is not None and total:
            name += f"\n(agreed {row['agreed'] / total:.0%})"
        names.append(name)
    left = [0] * len(balance)
    for verdict, colour in (("correct", "#4caf50"), ("incorrect", "#e53935"), ("unknown", "#9e9e9e")):
        values = [row[verdict] for row in balance]
        bars = ax.barh(names, values, left=left, color=colour, label=verdict)
        ax.bar_label(bars, labels=[str(v) if v else "" for v in values], label_type="center", fontsize=8)
        left = [a + b for a, b in zip(left, values)]
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("labels (newest per annotator)")
    ax.legend(loc="lower right", fontsize=8)


def _draw_bars(ax: Any, items: list[tuple[str, float]], unit: str, title: str, fmt: str) -> None:
    ax.set_title(title)
    if not items:
        ax.text(0.5, 0.5, f"no {unit} recorded", ha="center", va="center")
        ax.set_axis_off()
        return
    bars = ax.bar([name for name, _ in items], [value for _, value in items], color="#5c6bc0")
    ax.bar_label(bars, labels=[fmt.format(value) for _, value in items], fontsize=9)
    ax.set_ylabel(unit)
    ax.margins(y=0.15)


# ------------------------------------------------------------------ the task


def _share(value: float | None, percent: bool = False) -> str:
    return "-" if value is None else f"{value:.1%}" if percent else f"{value:.3f}"


AGREEMENT_KEY = "c/i: A said correct, B incorrect (c correct, i incorrect)"


def report_tables(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The report's numbers as display rows (the CLI's tables and the Prefect table artifacts)."""
    return {
        "agreement": [
            {
                "A / B": f"{p['a']} / {p['b']}",
                "steps": p["steps"],
                "agree": _share(p["agreement"], True),
                "kappa": _share(p["kappa"]),
                "c/c": p["both_correct"],
                "i/i": p["both_incorrect"],
                "c/i": p["a_correct_b_incorrect"],
                "i/c": p["a_incorrect_b_correct"],
            }
            for p in report["agreement"]
        ],
        "balance": [
            {
                "labels": b["labels"] + (" (refute-only)" if b["refute_only"] else ""),
                "correct": b["correct"],
                "incorrect": b["incorrect"],
                "unknown": b["unknown"],
                "agreed": "-" if b["agreed"] is None else b["agreed"],
            }
            for b in report["balance"]
        ],
        "stages": [
            {"stage": s["stage"], "run": s["run_id"][:8], "status": s["status"], "seconds": s["seconds"]}
            for s in report["stages"]
        ],
        "completions": [dict(c) for c in report["completions"]],
    }


@task(name="write-run-report", cache_policy=NO_CACHE)
def write_run_report(db: str, run_id: str) -> dict[str, Any]:
    """Compute the report, draw its PNG and publish it as Prefect artifacts; returns the numbers."""
    parent_run_id = flow_run.parent_flow_run_id if flow_run.id else None
    with Store(db) as store:
        report = compute_report(store, run_id, parent_run_id)
    chart = draw_report(report, report_dir(db) / f"{run_id}.png")
    report["chart"] = str(chart)
    if flow_run.id:
        # An offline Prefect UI cannot show a local file as an image: the artifact gives its path.
        create_markdown_artifact(
            f"# rmforge run report\n\nChart: `{chart}` (a local file; the Prefect UI cannot embed it "
            f"offline). The numbers are in the `rmforge-run-report-*` table artifacts and in "
            f"`rmforge report {run_id}`.\n",
            key="rmforge-run-report",
            description="run report chart",
        )
        for name, rows in report_tables(report).items():
            if rows:
                create_table_artifact(
                    rows,
                    key=f"rmforge-run-report-{name}",
                    description=f"run report: {name}" + (f" ({AGREEMENT_KEY})" if name == "agreement" else ""),
                )
    return report
