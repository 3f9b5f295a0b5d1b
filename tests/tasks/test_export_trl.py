"""A real TRL training step on every export TRL has a trainer for, in both formats: the datasets are
what TRL's trainers read and tokenize as intended, not only shaped like the examples in its docs.

The model is a randomly initialised one-layer Llama with the packaged SmolLM2 tokenizer (and its chat
template), so a step takes a second on a CPU and nothing is downloaded.
"""

from __future__ import annotations

import json
import math

import datasets
import pytest

from rmforge.exports.files import MANIFEST
from rmforge.generators.prompts import MATH_SYSTEM
from rmforge.schemas.config import ExportConfig
from rmforge.tasks.export import export_datasets
from tests.tasks.test_export_formats import APRIL, build_trl_store

pytestmark = pytest.mark.slow  # TRL trains a step on each export

trl = pytest.importorskip("trl", reason="TRL comes with the `dev` extra (`make install`)")
transformers = pytest.importorskip("transformers")

TRAINING = dict(
    max_steps=1,
    per_device_train_batch_size=2,
    report_to=[],
    use_cpu=True,
    bf16=False,
    save_strategy="no",
    disable_tqdm=True,
    gradient_checkpointing=False,
)


@pytest.fixture(scope="module")
def tokenizer():
    from rmforge.generators.local_models import prepare_smollm2

    return transformers.AutoTokenizer.from_pretrained(prepare_smollm2())


@pytest.fixture()
def tiny(tokenizer):
    """tiny(ModelClass, **config) -> a fresh one-layer model for the tokenizer's vocabulary."""

    def make(model_class, **config):
        return model_class(
            transformers.LlamaConfig(
                vocab_size=len(tokenizer),
                hidden_size=16,
                intermediate_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                num_key_value_heads=1,
                pad_token_id=tokenizer.pad_token_id,
                **config,
            )
        )

    return make


def one_step(trainer):
    result = trainer.train()
    assert result.global_step == 1 and math.isfinite(result.training_loss)
    return trainer.train_dataset


@pytest.fixture()
def export(tmp_path, db, monkeypatch):
    """export(format) -> (out, load): the TRL store exported in that format; load(name) reads a dataset
    as a user would."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    build_trl_store(db)

    def export_as(style):
        out = tmp_path / style
        export_datasets.fn(db, str(out), settings=ExportConfig(format=style))
        return out, lambda name: datasets.load_dataset(str(out), name, split="train", cache_dir=str(tmp_path / "hf"))

    return export_as


FORMATS = pytest.mark.parametrize("style", ["standard", "conversational"])


@FORMATS
def test_prm_trainer_takes_a_step_with_the_declared_separator(export, tiny, tokenizer, tmp_path, style):
    from trl.experimental.prm import PRMConfig, PRMTrainer

    out, load = export(style)
    separator = json.loads((out / MANIFEST).read_text())["step_separator"]
    process = load("process")
    args = PRMConfig(output_dir=str(tmp_path / "prm"), step_separator=separator, **TRAINING)
    trainer = PRMTrainer(
        model=tiny(transformers.LlamaForTokenClassification, num_labels=2),
        args=args,
        train_dataset=process,
        processing_class=tokenizer,
    )

    tokenized = one_step(trainer)
    for example, row in zip(tokenized, process):
        assert sum(label != -100 for label in example["labels"]) == len(row["completions"])  # a label per step
        completion = tokenizer.decode(example["input_ids"]).removeprefix(tokenizer.bos_token + row["prompt"])
        assert completion.split(separator) == row["completions"] + [""]  # what a PRM scoring splits on


@FORMATS
def test_reward_trainer_takes_a_step_and_sees_prompt_and_response_apart(export, tiny, tokenizer, tmp_path, style):
    _, load = export(style)
    args = trl.RewardConfig(output_dir=str(tmp_path / "rm"), **TRAINING)
    trainer = trl.RewardTrainer(
        model=tiny(transformers.LlamaForSequenceClassification, num_labels=1),
        args=args,
        train_dataset=load("preference"),
        processing_class=tokenizer,
    )

    tokenized = one_step(trainer)
    chosen = [tokenizer.decode(row["chosen_ids"]) for row in tokenized]
    april = next(text for text in chosen if APRIL in text)
    if style == "standard":
        assert "April and May?\n\nStep 1: In May" in april
    else:
        assert april.startswith(
            f"<|im_start|>system\n{MATH_SYSTEM}<|im_end|>\n<|im_start|>user\n{APRIL}<|im_end|>\n"
            "<|im_start|>assistant\nStep 1: In May"
        )


@FORMATS
def test_kto_trainer_takes_a_step(export, tiny, tokenizer, tmp_path, style):
    _, load = export(style)
    args = trl.KTOConfig(output_dir=str(tmp_path / "kto"), **TRAINING)
    trainer = trl.KTOTrainer(
        model=tiny(transformers.LlamaForCausalLM),
        ref_model=tiny(transformers.LlamaForCausalLM),
        args=args,
        train_dataset=load("kto"),
        processing_class=tokenizer,
    )

    tokenized = one_step(trainer)
    prompts = [tokenizer.decode(row["prompt_ids"]) for row in tokenized]
    assert any(APRIL in prompt for prompt in prompts)
    assert any(MATH_SYSTEM in prompt for prompt in prompts) == (style == "conversational")


def test_sft_trainer_takes_a_step_on_conversational_critiques(export, tiny, tokenizer, tmp_path):
    _, load = export("conversational")  # standard critiques (prompt, response, critique) are no TRL type
    args = trl.SFTConfig(output_dir=str(tmp_path / "sft"), **TRAINING)
    trainer = trl.SFTTrainer(
        model=tiny(transformers.LlamaForCausalLM),
        args=args,
        train_dataset=load("critiques"),
        processing_class=tokenizer,
    )

    [example] = one_step(trainer)
    text = tokenizer.decode(example["input_ids"])
    assert "grader of step-by-step solutions" in text and "<paragraph_0>" in text
    assert text.endswith("<|im_start|>assistant\nParagraph 0 doubles instead of halving.\nVERDICT: 0<|im_end|>\n")
