"""Export formats as TRL reads them (standard text, conversational messages, the PRM step separator),
the Hub-ready card and the config file written beside the data."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import DatasetCard

from rmforge.exports.card import size_category
from rmforge.exports.files import CARD, CONFIG_FILE, MANIFEST
from rmforge.generators.prompts import MATH_SYSTEM
from rmforge.schemas.config import ExportConfig, SamplingConfig
from rmforge.schemas.exports import export_schema
from rmforge.schemas.records import (
    Critique,
    OutcomeConsensus,
    OutcomeLabel,
    PreferencePair,
    Problem,
    ProcessExample,
    Rollout,
    RunRecord,
    Step,
    StepLabel,
    canonical_json,
    stable_hash,
)
from rmforge.store import Store
from rmforge.tasks.export import export_datasets

APRIL = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
EGGS = "Janet's ducks lay 16 eggs. She eats 3 and sells the rest at $2 each. How much does she make?"
SAMPLING = SamplingConfig(n=2, temperature=0.5, max_tokens=96)
RUNS = {
    "gen-1": (
        "generate",
        {"generator": {"backend": "vllm", "model": "smollm2-135m-instruct"}, "sampling": SAMPLING.model_dump()},
    ),
    "import-1": ("import-rollouts", {"path": "processbench.jsonl"}),
    "annotate-1": ("annotate", {"annotators": ["answer", "z3_arith", "judge"], "options": {"judge": {"votes": 3}}}),
    "curate-1": ("curate", {"annotators": ["answer", "z3_arith"], "curation": {"near_dedupe": False}}),
}


def _rollout(problem: Problem, steps: list[str], *, generated: bool, index: int) -> tuple[Rollout, list[Step]]:
    response = ("\n" if generated else "\n\n").join(steps)
    rollout = Rollout(
        rollout_id=stable_hash("formats", problem.problem_id, index),
        problem_id=problem.problem_id,
        response=response,
        model="smollm2-135m-instruct" if generated else "unknown",
        generator="vllm" if generated else "import",
        sampling=SAMPLING.model_dump_json() if generated else "{}",
        sample_index=index,
        run_id="gen-1" if generated else "import-1",
    )
    return rollout, [Step(rollout_id=rollout.rollout_id, step_index=i, text=t) for i, t in enumerate(steps)]


def build_trl_store(db: str) -> dict[str, str]:
    """Two problems, each with a right and a wrong rollout: the April one sampled by rmforge's vLLM
    generator (one-line steps), the eggs one imported ProcessBench-style (steps holding newlines, one
    with a trailing space). Every dataset gets rows. Returns the rollout ids by name."""
    april = Problem(problem_id="april", question=APRIL, gold_answer="72", source="hf:openai/gsm8k:test")
    eggs = Problem(problem_id="eggs", question=EGGS, gold_answer="26", source="generated:arithmetic")
    made = {
        "april_right": _rollout(
            april,
            [
                "Step 1: In May she sold 48 / 2 = 24 clips.",
                "Step 2: Altogether 48 + 24 = 72.",
                "The answer is \\boxed{72}",
            ],
            generated=True,
            index=0,
        ),
        "april_wrong": _rollout(
            april,
            [
                "Step 1: In May she sold 48 * 2 = 96 clips.",
                "Step 2: Altogether 48 + 96 = 144.",
                "The answer is \\boxed{144}",
            ],
            generated=True,
            index=1,
        ),
        "eggs_right": _rollout(
            eggs,
            ["Step 1: 16 - 3 = 13\nso 13 eggs are left. ", "Step 2: 13 * 2 = 26\nAnswer: 26"],
            generated=False,
            index=2,
        ),
        "eggs_wrong": _rollout(
            eggs,
            ["Step 1: 16 - 3 = 12\nso 12 eggs are left.", "Step 2: 12 * 2 = 24\nAnswer: 24"],
            generated=False,
            index=3,
        ),
    }
    rollouts = {name: rollout for name, (rollout, _) in made.items()}
    steps = {name: rollout_steps for name, (_, rollout_steps) in made.items()}
    right = {name: name.endswith("right") for name in made}
    examples = []
    for name, rollout in rollouts.items():
        taken = [s.text for s in steps[name]] if right[name] else [steps[name][0].text]
        examples.append(
            ProcessExample(
                example_id=f"ex-{name}",
                rollout_id=rollout.rollout_id,
                problem_id=rollout.problem_id,
                prompt=APRIL if rollout.problem_id == "april" else EGGS,
                completions=taken,
                labels=[right[name]] * len(taken),
                soft_labels=[float(right[name])] * len(taken),
                annotators=["z3_arith"],
                label_supporters=[["z3_arith"]] * len(taken),
                outcome_implied=[False] * len(taken),
                run_id="curate-1",
            )
        )
    pairs = [
        PreferencePair(
            pair_id=f"pair-{problem}",
            problem_id=problem,
            prompt=APRIL if problem == "april" else EGGS,
            chosen=rollouts[f"{problem}_right"].response,
            rejected=rollouts[f"{problem}_wrong"].response,
            chosen_rollout_id=rollouts[f"{problem}_right"].rollout_id,
            rejected_rollout_id=rollouts[f"{problem}_wrong"].rollout_id,
            run_id="curate-1",
        )
        for problem in ("april", "eggs")
    ]
    verdict = {name: "correct" if right[name] else "incorrect" for name in made}
    with Store(db) as store:
        store.write("problems", [april, eggs])
        store.write("rollouts", list(rollouts.values()))
        store.write("steps", [step for rollout_steps in steps.values() for step in rollout_steps])
        store.write(
            "outcome_labels",
            [
                OutcomeLabel(
                    rollout_id=r.rollout_id,
                    annotator="answer",
                    annotator_version="1",
                    config_hash="answer-cfg",
                    verdict=verdict[name],
                    run_id="annotate-1",
                )
                for name, r in rollouts.items()
            ],
        )
        store.write(
            "step_labels",
            [
                StepLabel(
                    rollout_id=rollouts[name].rollout_id,
                    step_index=0,
                    annotator="z3_arith",
                    annotator_version="2",
                    config_hash="z3-cfg",
                    verdict=verdict[name],
                    run_id="annotate-1",
                )
                for name in made
            ],
        )
        store.write(
            "outcome_consensus",
            [
                OutcomeConsensus(
                    rollout_id=r.rollout_id, verdict=verdict[name], supporters=["answer"], run_id="curate-1"
                )
                for name, r in rollouts.items()
            ],
        )
        store.write("process_examples", examples)
        store.write("preference_pairs", pairs)
        store.write(
            "critiques",
            [
                Critique(
                    critique_id="crit-1",
                    rollout_id=rollouts["april_wrong"].rollout_id,
                    annotator="judge",
                    model="judge-model",
                    sample_index=0,
                    first_error_step=0,
                    verdict="incorrect",
                    text="Paragraph 0 doubles instead of halving.\nVERDICT: 0",
                    run_id="annotate-1",
                )
            ],
        )
        store.write(
            "runs",
            [
                RunRecord(run_id=run_id, flow=flow, config=canonical_json(config), status="completed")
                for run_id, (flow, config) in RUNS.items()
            ],
        )
    return {name: rollout.rollout_id for name, rollout in rollouts.items()}


def rows(out: Path, name: str) -> list[dict]:
    return pq.read_table(out / f"{name}.parquet").to_pylist()


@pytest.fixture()
def trl_store(db):
    return db, build_trl_store(db)


# ---------------------------------------------------------------- standard format


def test_standard_prompts_end_with_a_blank_line_so_trl_keeps_prompt_and_completion_apart(tmp_path, trl_store):
    db, _ = trl_store
    out = tmp_path / "out"
    export_datasets.fn(db, str(out))

    for name in ("process", "preference", "kto"):
        assert {row["prompt"] for row in rows(out, name)} == {APRIL + "\n\n", EGGS + "\n\n"}, name
    assert [row["prompt"] for row in rows(out, "critiques")] == [APRIL + "\n\n"]
    # What TRL's RewardTrainer tokenizes for a standard preference row: prompt + chosen, as they are.
    pair = next(row for row in rows(out, "preference") if row["problem_id"] == "april")
    assert "April and May?\n\nStep 1: In May" in pair["prompt"] + pair["chosen"]
    assert "Standard format (TRL): each `prompt` ends with a blank line ('\\n\\n')" in (out / CARD).read_text()


def test_process_steps_never_hold_the_step_separator_the_export_declares(tmp_path, trl_store):
    db, _ = trl_store
    out = tmp_path / "out"
    export_datasets.fn(db, str(out), ["process"])

    separator = json.loads((out / MANIFEST).read_text())["step_separator"]
    assert separator == "\n\n"  # TRL's default "\n" is inside the imported steps
    steps = [step for row in rows(out, "process") for step in row["completions"]]
    assert any("\n" in step for step in steps) and not any(separator in step for step in steps)
    # TRL ends every step with the separator and a PRM splits on it: no step may start or end in whitespace.
    assert all(step == step.strip() for step in steps)
    assert "Step 1: 16 - 3 = 13\nso 13 eggs are left." in steps
    assert "`PRMConfig(step_separator='\\n\\n')`" in (out / CARD).read_text()
    assert yaml.safe_load((out / CONFIG_FILE).read_text())["export"]["step_separator"] == "\n\n"


@pytest.mark.parametrize(
    "rows, category", [(0, "n<1K"), (999, "n<1K"), (1_000, "1K<n<10K"), (123_456, "100K<n<1M"), (10**12, "n>1T")]
)
def test_size_category_follows_the_hubs_buckets(rows, category):
    assert size_category(rows) == category


def test_steps_without_newlines_keep_trls_default_separator(tmp_path, db):
    from tests.tasks.test_export import build_store

    build_store(db)
    out = tmp_path / "out"
    export_datasets.fn(db, str(out), ["process"])
    assert json.loads((out / MANIFEST).read_text())["step_separator"] == "\n"


# ---------------------------------------------------------------- conversational format


def test_conversational_export_holds_chat_messages_with_the_generators_system_prompt(tmp_path, trl_store):
    db, ids = trl_store
    out = tmp_path / "out"
    export_datasets.fn(db, str(out), settings=ExportConfig(format="conversational"))

    for name in ("process", "preference", "kto", "critiques"):
        assert (
            pq.read_schema(out / f"{name}.parquet").remove_metadata().equals(export_schema(name, "conversational"))
        ), name
    sampled = [{"role": "system", "content": MATH_SYSTEM}, {"role": "user", "content": APRIL}]
    imported = [{"role": "user", "content": EGGS}]  # an imported rollout's prompt is unknown beyond its question
    preference = {row["problem_id"]: row for row in rows(out, "preference")}
    assert preference["april"]["prompt"] == sampled and preference["eggs"]["prompt"] == imported
    assert preference["april"]["chosen"] == [
        {
            "role": "assistant",
            "content": "Step 1: In May she sold 48 / 2 = 24 clips.\nStep 2: Altogether "
            "48 + 24 = 72.\nThe answer is \\boxed{72}",
        }
    ]
    assert preference["april"]["rejected"][0]["content"].startswith("Step 1: In May she sold 48 * 2")
    kto = {row["rollout_id"]: row for row in rows(out, "kto")}
    assert kto[ids["april_wrong"]]["prompt"] == sampled and kto[ids["eggs_right"]]["prompt"] == imported
    assert kto[ids["eggs_right"]]["completion"] == [
        {
            "role": "assistant",
            "content": "Step 1: 16 - 3 = 13\nso 13 eggs are left. \n\nStep 2: 13 * 2 = 26\nAnswer: 26",
        }
    ]

    [critique] = rows(out, "critiques")
    system, user = critique["prompt"]
    assert system["role"] == "system" and "grader of step-by-step solutions" in system["content"]
    assert user["role"] == "user" and APRIL in user["content"]
    assert "<paragraph_0>\nStep 1: In May she sold 48 * 2 = 96 clips.\n</paragraph_0>" in user["content"]
    assert critique["completion"] == [
        {"role": "assistant", "content": "Paragraph 0 doubles instead of halving.\nVERDICT: 0"}
    ]
    # PRMTrainer reads text prompts only: process stays standard.
    assert {row["prompt"] for row in rows(out, "process")} == {APRIL + "\n\n", EGGS + "\n\n"}
    card = (out / CARD).read_text()
    assert "Conversational format (TRL)" in card and "`process` stays in the standard format" in card


def test_conversational_configs_load_with_datasets_offline(tmp_path, trl_store, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    db, _ = trl_store
    out = tmp_path / "out"
    export_datasets.fn(db, str(out), settings=ExportConfig(format="conversational"))
    for name in ("preference", "kto", "critiques"):
        loaded = datasets.load_dataset(str(out), name, split="train", cache_dir=str(tmp_path / "cache"))
        assert loaded.to_list() == rows(out, name), name
        assert loaded.features["prompt"].feature["role"].dtype == "string"  # a list of messages, as TRL expects


# ---------------------------------------------------------------- the card and the config file


def test_card_metadata_is_what_the_hub_reads(tmp_path, trl_store):
    db, _ = trl_store
    out = tmp_path / "out"
    settings = ExportConfig(license="cc-by-4.0", language=["en", "fr"], pretty_name="Clips and eggs PRM data")
    export_datasets.fn(db, str(out), settings=settings)

    card = DatasetCard.load(out / CARD)
    data = card.data.to_dict()
    assert data["license"] == "cc-by-4.0" and data["language"] == ["en", "fr"]
    assert data["pretty_name"] == "Clips and eggs PRM data"
    assert data["size_categories"] == ["n<1K"]
    assert data["task_categories"] == ["text-classification", "text-generation", "token-classification"]
    assert data["source_datasets"] == ["original", "openai/gsm8k"]
    assert data["tags"] == [
        "rmforge",
        "reward-model",
        "trl",
        "process-reward-model",
        "preference",
        "kto",
        "critique",
        "synthetic",
    ]
    assert [(c["config_name"], c["data_files"][0]["path"]) for c in data["configs"]] == [
        (name, f"{name}.parquet") for name in ("process", "preference", "kto", "critiques")
    ]
    assert card.text.lstrip().startswith("# Clips and eggs PRM data")


def test_card_license_defaults_to_other(tmp_path, trl_store):
    db, _ = trl_store
    out = tmp_path / "out"
    export_datasets.fn(db, str(out))
    assert DatasetCard.load(out / CARD).data.license == "other"


def test_card_names_models_sampling_annotator_versions_and_runs(tmp_path, trl_store):
    db, _ = trl_store
    out = tmp_path / "out"
    export_datasets.fn(db, str(out), run_id="export-9")
    body = DatasetCard.load(out / CARD).text

    assert (f"| `smollm2-135m-instruct` | vllm | `{SAMPLING.model_dump_json()}` | 2 | `gen-1` |") in body
    assert "| `unknown` | import | (imported) | 2 | `import-1` |" in body
    assert "Problem sources: `generated:arithmetic` (1), `hf:openai/gsm8k:test` (1)." in body
    assert "| `answer` | 1 | `answer-cfg` |  | 0 | 4 | `{}` | `annotate-1` |" in body
    assert "| `z3_arith` | 2 | `z3-cfg` |  | 4 | 0 | `{}` | `annotate-1` |" in body
    for run_id, (flow, _) in RUNS.items():
        assert f"| `{run_id}` | {flow} | completed |" in body
    assert "outcome_implied_labels" in body and "(export run `export-9`)" in body


def test_config_file_holds_the_export_settings_and_every_runs_config(tmp_path, trl_store):
    db, _ = trl_store
    out = tmp_path / "out"
    settings = ExportConfig(format="conversational", license="mit", push_to_hub="me/clips")
    export_datasets.fn(db, str(out), ["process", "kto"], run_id="export-9", settings=settings)

    config = yaml.safe_load((out / CONFIG_FILE).read_text())
    assert config["export"] == {
        **settings.model_dump(),
        "run_id": "export-9",
        "datasets": ["process", "kto"],
        "step_separator": "\n\n",
    }
    assert {run["run_id"]: (run["flow"], run["config"]) for run in config["runs"]} == RUNS
    assert '"\\n\\n"' in (out / CONFIG_FILE).read_text()  # the separator reads as written in Python
    assert json.loads((out / MANIFEST).read_text())["files"][CONFIG_FILE]["bytes"] > 0
    assert 'datasets.load_dataset("me/clips", "process")' in (out / CARD).read_text()
