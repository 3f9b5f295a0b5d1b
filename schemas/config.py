"""Run configuration: one pydantic object, validated by Prefect as a flow parameter.

Every field has a bounded default so `rmforge run` with no arguments runs the
embedded demo: a few generated arithmetic problems, the packaged SmolLM2 model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MODEL = "smollm2-135m-instruct"


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplingConfig(Config):
    n: int = Field(default=1, ge=1, le=1024)
    temperature: float = Field(default=0.8, ge=0.0, le=5.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(default=320, ge=1, le=32768)
    seed: int | None = 0
    stop: list[str] = Field(default_factory=list)


class GeneratorConfig(Config):
    """Which LLM answers. `vllm`: offline engine in this process; `openai`: any
    OpenAI-compatible server (`vllm serve`, TGI, SGLang, hosted APIs)."""

    backend: Literal["vllm", "openai"] = "vllm"
    model: str = Field(
        default=DEFAULT_MODEL,
        description="Local folder, hub id (when online), or the packaged alias "
        f"'{DEFAULT_MODEL}'; for `openai` the served model name.",
    )
    # vLLM engine options
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="auto: bfloat16 on GPU and on CPUs with native bf16 (AVX512-BF16, AMX, Arm "
        "BF16), float32 elsewhere, where emulated bf16 is ~3x slower (bench/reports/vllm_dtype_avx2.md).",
    )
    max_model_len: int = Field(default=2048, ge=128)
    enable_prefix_caching: bool = True
    enforce_eager: bool | None = Field(
        default=None, description="None: eager on CPU (avoids 1-2 min recompiles), graphs on GPU."
    )
    gpu_memory_utilization: float = Field(default=0.85, gt=0.0, le=1.0)
    tensor_parallel_size: int = Field(default=1, ge=1)
    cpu_kv_cache_gib: int = Field(default=2, ge=1)
    max_num_seqs: int | None = Field(
        default=None, ge=1, description="Sequences the engine runs at once; None: vLLM's default for the device."
    )
    # OpenAI-compatible server options
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    request_timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=20)
    max_concurrency: int = Field(default=8, ge=1, le=256)
    base_urls: list[str] = Field(
        default_factory=list,
        description="Several OpenAI-compatible servers of the same model (data-parallel): requests are "
        "spread over them round-robin, `max_concurrency` per server; replaces base_url when set.",
    )


# Qwen2.5-Math-PRM's conventions (its model card): the system prompt it was trained with, and the
# token that ends each step, at which it reads two classes (0: wrong, 1: right).
QWEN_PRM_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
QWEN_PRM_STEP_SEPARATOR = "<extra_0>"


class ScorerConfig(GeneratorConfig):
    """Which process reward model scores steps, and how it reads them. `vllm`: the offline engine's
    pooling runner in this process; `openai`: the `/pooling` endpoint of a vLLM server
    (`vllm serve MODEL --runner pooling`). Engine and server options are the generator's."""

    model: str = Field(
        default="",
        description="The reward model: a local folder or hub id (vllm), the served model name (openai). "
        "Required, e.g. Qwen/Qwen2.5-Math-PRM-7B.",
    )
    step_separator: str = Field(
        default=QWEN_PRM_STEP_SEPARATOR,
        min_length=1,
        description="Written after every step; the model scores each step at this token (one token of its "
        "vocabulary). A vLLM server reads the scores at its --pooler-config step_tag_id: the same token.",
    )
    system_prompt: str = Field(default=QWEN_PRM_SYSTEM_PROMPT, description="The system turn the model expects.")
    positive_class: int = Field(
        default=1, ge=0, description="Which of the classes at each separator means 'this step is right'."
    )


ArithmeticOperation = Literal["+", "-", "*", "/"]
ARITHMETIC_OPERATIONS: tuple[ArithmeticOperation, ...] = ("+", "-", "*", "/")


class ProblemSourceConfig(Config):
    kind: Literal["arithmetic", "logic", "file", "hf"] = "arithmetic"
    count: int = Field(default=8, ge=1, le=1_000_000)
    min_steps: int = Field(default=1, ge=1, le=12)
    max_steps: int = Field(default=2, ge=1, le=12)
    operations: list[ArithmeticOperation] = Field(
        default_factory=lambda: list(ARITHMETIC_OPERATIONS),
        min_length=1,
        description="arithmetic: the operations problems may use (a price step needs `*`).",
    )
    max_number: int = Field(
        default=60, ge=3, le=1_000_000, description="arithmetic: largest starting number and added number."
    )
    seed: int | Literal["scheduled"] = Field(
        default=0, description='"scheduled": from the flow run\'s scheduled start time (new problems each run)'
    )
    path: str | None = Field(default=None, description="JSONL/Parquet file, or HF dataset path/id")
    split: str = "test"
    question_field: str = "question"
    answer_field: str = "answer"


class StepSplitConfig(Config):
    mode: Literal["auto", "lines", "paragraphs", "numbered"] = "auto"
    min_chars: int = Field(default=2, ge=0)


ConsensusPolicy = Literal["ranked", "no_contradiction", "unanimous"]
CONSENSUS_POLICIES: tuple[str, ...] = ("ranked", "no_contradiction", "unanimous")


class CurationConfig(Config):
    consensus: ConsensusPolicy = Field(
        default="ranked",
        description="Only evidence counts (a refute-only annotator's `correct` abstains) and a "
        "human verdict outranks everything. ranked: the highest authority with evidence decides "
        "(human > verifier > model), so a formal refutation outranks model votes; "
        "no_contradiction: any disagreement leaves the step undecided; unanimous: also every "
        "voter must have decided.",
    )
    required_annotators: list[str] = Field(
        default_factory=list,
        description="Annotators whose evidence must support a step's verdict (e.g. [mc, judge] "
        "keeps a label only when both agree, as in Qwen's consensus filtering).",
    )
    direct_step_evidence: bool = Field(
        default=False,
        description="Labels that rest only on a rollout's own correct outcome (`outcome_implied`: "
        '"it reaches the gold answer, so every step is right", Math-Shepherd\'s good prefix) abstain, '
        "so a step is confirmed only by evidence about the step itself; solutions can reach the right "
        "answer through a wrong step.",
    )
    exact_dedupe: bool = True
    near_dedupe: bool = True
    near_duplicate_threshold: float = Field(default=0.95, gt=0.0, le=1.0)
    embedding_model: str | None = Field(
        default=None, description="sentence-transformers folder; None: packaged all-MiniLM-L6-v2"
    )
    embedding_batch_size: int = Field(default=64, ge=1)
    max_pairs_per_problem: int = Field(default=8, ge=1)
    embedding_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto", description="auto: bfloat16 on GPU and CPUs with native bf16, float32 otherwise."
    )
    problem_near_duplicate_threshold: float = Field(
        default=0.95, gt=0.0, le=1.0, description="Cosine above which two problems are near-duplicates."
    )
    decontaminate: list[str] = Field(
        default_factory=list,
        description="Evaluation sets (JSON/JSONL/Parquet files, HF dataset folders or ids) whose "
        "problems must not appear in the curated data.",
    )
    decontaminate_split: str = "test"
    decontaminate_ngram: int = Field(default=13, ge=1, le=64, description="n of the word n-grams compared.")
    decontaminate_ngram_threshold: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Drop a problem when more than this fraction of its n-grams occur in one eval "
        "item (0: any shared n-gram, the GPT-3 rule).",
    )
    decontaminate_embedding_threshold: float | None = Field(
        default=0.85,
        gt=0.0,
        le=1.0,
        description="Cosine to an eval item from which a problem is dropped (paraphrases: 0.90-0.94, "
        "unrelated GSM8K-style problems: <= 0.71 in bench/reports/decontaminate.md); None: off.",
    )


ExportFormat = Literal["standard", "conversational"]


class ExportConfig(Config):
    """How `rmforge export` writes the datasets and their card, and where it pushes them."""

    format: ExportFormat = Field(
        default="standard",
        description="standard: text prompts and completions (each prompt ends with a blank line, so "
        "TRL's prompt + completion reads as two paragraphs); conversational: TRL's chat messages "
        "(prompt with the generator's system prompt, completions as assistant messages).",
    )
    # Nobody but the user knows the terms of the problems' sources and of the models' outputs.
    license: str = Field(default="other", description="The card's license (a Hub license id, e.g. cc-by-4.0).")
    language: list[str] = Field(default_factory=lambda: ["en"], description="ISO 639 codes for the card.")
    pretty_name: str | None = Field(default=None, description="The card's title (default: rmforge export).")
    push_to_hub: str | None = Field(default=None, description="Hub dataset repo (user/name) to push the export to.")
    private: bool = Field(
        default=False, description="Create the Hub repo private (an existing repo keeps its visibility)."
    )
    hub_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="Seconds each request to the Hub may wait to connect, send or read."
    )


TaskRunnerKind = Literal["threads", "dask", "ray"]
# The package each task runner needs (the `scale` extra), checked before any work starts.
TASK_RUNNER_PACKAGES: dict[str, str] = {"dask": "prefect-dask", "ray": "prefect-ray"}


class ComputeConfig(Config):
    """Where annotation batches run: threads of this process, or the worker processes of a
    Dask or Ray cluster (a local one started for the run, or an existing one at `address`)."""

    task_runner: TaskRunnerKind = "threads"
    workers: int = Field(
        default=1, ge=1, le=1024, description="Batches labelled at once: threads, or local cluster worker processes."
    )
    address: str | None = Field(
        default=None,
        description="An existing cluster: a Dask scheduler (tcp://host:8786) or Ray "
        "(ray://host:10001, or auto for the one `ray start` made on this machine).",
    )


class PipelineConfig(Config):
    # The defaults are the demo, sized to finish in under 5 minutes on 2 CPU cores (README,
    # bench/reports/demo_cost.md) with labels that hold: the packaged model solves one-step
    # additions of numbers up to 9 about a fifth of the time at temperature 0.5 and longer
    # problems almost never, and a Monte Carlo refutation needs a completer that reaches the
    # gold on the problem (annotators/completions.py). Several samples per problem: preference
    # pairs need a right and a wrong answer to the same problem.
    problems: ProblemSourceConfig = Field(
        default_factory=lambda: ProblemSourceConfig(min_steps=1, max_steps=1, operations=["+"], max_number=9)
    )
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    sampling: SamplingConfig = Field(default_factory=lambda: SamplingConfig(n=4, max_tokens=96, temperature=0.5))
    steps: StepSplitConfig = Field(default_factory=StepSplitConfig)
    # mc_binary confirms and refutes steps (process examples) at about a third of mc's completions.
    annotators: list[str] = Field(default_factory=lambda: ["answer", "z3_arith", "mc_binary"])
    annotator_options: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"mc_binary": {"k": 4, "max_tokens": 64}},
        description="Per-annotator config, keyed by annotator name.",
    )
    curation: CurationConfig = Field(default_factory=CurationConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    batch_size: int = Field(default=256, ge=1, le=100_000)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
