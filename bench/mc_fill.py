"""Bench: how full mc_binary keeps the engine, pipelined per rollout vs in rounds vs one ideal call.

The same wrong rollouts (generated arithmetic solutions with an injected error, as in
bench/mc_modes.py) are labelled by mc_binary twice on one vLLM engine with the packaged
model: searches advancing per rollout (`Generator.run_pipelined`, the engine's step loop)
and the round-based search (the base class's rounds: one `generate` call per round and
wave). Then every request the pipelined search made goes to the engine again in ONE
`vllm.LLM.generate` call: the ideal batch. The prefix cache is emptied before each run.

Fill: sequences in flight at the engine (added, not yet finished), at most the engine's
`max_num_seqs`, averaged over the run's wall time, divided by `max_num_seqs`. Time the
front end spends grading between rounds, with nothing in flight, counts as empty.
Throughput per wall second and per CPU second of this process and the engine's (the
machine is shared: other jobs' load slows wall time more than CPU time).
Writes bench/reports/mc_fill.md.
Run: .venv/bin/python bench/mc_fill.py [N_ROLLOUTS] [MAX_NUM_SEQS]
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

N_ROLLOUTS = int(sys.argv[1]) if len(sys.argv) > 1 else 12
MAX_NUM_SEQS = int(sys.argv[2]) if len(sys.argv) > 2 else 8
K = 4
MAX_TOKENS = 96  # fewer: most continuations are cut before their answer, ungradable, and stop the searches
TEMPERATURE = 0.8
REPORT = Path(__file__).parent / "reports" / "mc_fill.md"
FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile")


class EngineMeter:
    """Sequences in flight at the engine, integrated over time: wraps the engine's `add_request`
    and `step`, the boundary every call (`generate`, `enqueue`, the step loop) goes through."""

    def __init__(self, engine: Any, cap: int) -> None:
        import psutil

        self.cap, self.process = cap, psutil.Process()
        self.in_flight = self.completions = self.tokens = 0
        self.area = 0.0  # sequence-seconds, at most `cap` sequences at a time
        self.started = self.last = time.perf_counter()
        add_request, step = engine.add_request, engine.step

        def counted_add_request(request_id: str, prompt: Any, params: Any, *args: Any, **kwargs: Any) -> Any:
            self.advance()
            self.in_flight += params.n
            return add_request(request_id, prompt, params, *args, **kwargs)

        def counted_step() -> Any:
            outputs = step()
            self.advance()
            for output in outputs:
                if output.finished:
                    self.in_flight -= len(output.outputs)
                    self.completions += len(output.outputs)
                    self.tokens += sum(len(c.token_ids) for c in output.outputs)
            return outputs

        engine.add_request, engine.step = counted_add_request, counted_step

    def advance(self) -> None:
        now = time.perf_counter()
        self.area += min(self.in_flight, self.cap) * (now - self.last)
        self.last = now

    def start(self) -> None:
        from bench.vllm_cpu import cpu_seconds

        self.in_flight = self.completions = self.tokens = 0
        self.cpu_started = cpu_seconds(self.process)
        self.area, self.started, self.last = 0.0, time.perf_counter(), time.perf_counter()

    def result(self) -> dict[str, float]:
        from bench.vllm_cpu import cpu_seconds

        self.advance()
        wall, cpu = self.last - self.started, cpu_seconds(self.process) - self.cpu_started
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "completions_per_cpu_s": self.completions / cpu,
            "completions": self.completions,
            "tokens": self.tokens,
            "fill": self.area / (self.cap * wall),
            "completions_per_s": self.completions / wall,
            "tokens_per_s": self.tokens / wall,
        }


def make_wrappers():
    from rmforge.generators.base import Completion, GenerationRequest, Generator, PipelinedRequest
    from rmforge.schemas.config import SamplingConfig

    class RoundBased(Generator):
        """The engine driven as before: the base class's rounds, one `generate` call per round and wave."""

        backend = "vllm"

        def __init__(self, engine: Generator) -> None:
            self.engine, self.calls = engine, 0

        @property
        def model_name(self) -> str:
            return self.engine.model_name

        def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[list[Completion]]:
            self.calls += 1
            return self.engine.generate(requests, sampling)

    class Recording(RoundBased):
        """The engine's own pipelined loop, keeping every request it ran (the ideal call's requests)."""

        def __init__(self, engine: Generator) -> None:
            super().__init__(engine)
            self.ran: list[tuple[GenerationRequest, SamplingConfig]] = []

        def run_pipelined(self, requests: Iterable[PipelinedRequest]) -> None:
            self.calls += 1
            self.engine.run_pipelined(self.recorded(item) for item in requests)

        def recorded(self, item: PipelinedRequest) -> PipelinedRequest:
            self.ran.append((item.request, item.sampling))
            return PipelinedRequest(
                item.request, item.sampling, lambda completions: [self.recorded(f) for f in item.then(completions)]
            )

    return RoundBased, Recording


def main() -> None:
    from bench.mc_modes import first_errors, solution_items
    from rmforge.annotators.mc_binary import BinarySearchMCAnnotator
    from rmforge.generators.hardware import cpu_flags
    from rmforge.generators.vllm_engine import VLLMEngineGenerator
    from rmforge.schemas.config import DEFAULT_MODEL, GeneratorConfig

    items, _ = solution_items(N_ROLLOUTS, lambda i: True, "bench-fill")  # every rollout wrong
    engine = VLLMEngineGenerator(GeneratorConfig(model=DEFAULT_MODEL, max_num_seqs=MAX_NUM_SEQS))
    try:
        cap = engine._llm.llm_engine.vllm_config.scheduler_config.max_num_seqs
        meter = EngineMeter(engine._llm.llm_engine, cap)
        RoundBased, Recording = make_wrappers()
        options = {"k": K, "max_tokens": MAX_TOKENS, "temperature": TEMPERATURE}
        load_before = os.getloadavg()
        results, outputs, calls = {}, {}, {}
        recording = Recording(engine)
        # the ideal runs right after the pipelined search it is compared with
        for name, generator in (("rounds", RoundBased(engine)), ("pipelined", recording)):
            engine._llm.reset_prefix_cache()
            meter.start()
            outputs[name] = BinarySearchMCAnnotator(options, generator=generator).annotate(items, "bench")
            results[name], calls[name] = meter.result(), generator.calls
            print(name, results[name], flush=True)
        # the ideal: every request the pipelined search made, in one call
        prompts = [engine.render_prompt(request) for request, _ in recording.ran]
        params = [engine._sampling_params(sampling) for _, sampling in recording.ran]
        engine._llm.reset_prefix_cache()
        meter.start()
        engine._llm.generate(prompts, params, use_tqdm=False)
        results["ideal"], calls["ideal"] = meter.result(), 1
        print("ideal", results["ideal"], flush=True)
        load_after = os.getloadavg()
    finally:
        engine.close()

    ideal = results["ideal"]
    have = cpu_flags()
    verdicts = {name: Counter(lab.verdict for lab in out.step_labels) for name, out in outputs.items()}
    firsts = {name: first_errors(out, items) for name, out in outputs.items()}
    agree = sum(firsts["pipelined"][rollout_id] == step for rollout_id, step in firsts["rounds"].items())

    def row(label: str, name: str) -> str:
        r = results[name]
        return (
            f"| {label} | {calls[name]} | {r['completions']} | {r['wall_s']:.1f} | {100 * r['fill']:.0f}% | "
            f"{r['completions_per_s']:.2f} | {r['completions_per_s'] / ideal['completions_per_s']:.2f}x | "
            f"{r['tokens_per_s']:.0f} | {r['tokens_per_s'] / ideal['tokens_per_s']:.2f}x | {r['cpu_s']:.0f} | "
            f"{r['completions_per_cpu_s'] / ideal['completions_per_cpu_s']:.2f}x |"
        )

    rows = [
        row("ONE ideal `llm.generate` of the pipelined run's requests", "ideal"),
        row("mc_binary, pipelined per rollout (new)", "pipelined"),
        row("mc_binary, round-based (before)", "rounds"),
    ]
    lines = [
        "# Monte Carlo engine fill bench",
        "",
        f"{len(items)} wrong rollouts (generated arithmetic solutions with an injected error, "
        f"mean {sum(len(i.steps) for i in items) / len(items):.1f} steps), mc_binary k={K}, first_wave 1, "
        f"max_tokens={MAX_TOKENS}, temperature {TEMPERATURE}; completer `{DEFAULT_MODEL}` via vLLM on CPU "
        f"(all {len(os.sched_getaffinity(0))} cores of this process), dtype {engine.dtype}, "
        f"`max_num_seqs` {cap}, prefix cache emptied before each run; engine start not counted. "
        f"CPU flags: {', '.join(f for f in FLAGS if f in have)}; no {', '.join(f for f in FLAGS if f not in have)}. "
        f"Load average {load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end "
        "(the machine is shared: compare the ratios, measured in one run, not the seconds).",
        "",
        "| run | engine calls | completions | seconds | fill | completions/s | vs ideal | output tokens/s | vs ideal "
        "| CPU s | completions/CPU-s vs ideal |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Fill: sequences in flight at the engine (at most `max_num_seqs`), averaged over the run's wall time, "
        "over `max_num_seqs`; the front end's grading between rounds, with nothing in flight, counts as empty.",
        "",
        f"Pipelined wall time / round-based wall time: {results['pipelined']['wall_s'] / results['rounds']['wall_s']:.2f}; "
        f"CPU time: {results['pipelined']['cpu_s'] / results['rounds']['cpu_s']:.2f}; "
        f"fill {100 * results['pipelined']['fill']:.0f}% vs {100 * results['rounds']['fill']:.0f}%.",
        "",
        "Labels (on CPU vLLM samples with the engine-wide seed, not per request, so the two runs draw "
        "different samples; with per-request seeds, on GPU or a server, they ask for the same ones, and "
        "tests/annotators/test_mc.py checks equal labels and costs on a scripted completer):",
        "",
        "| run | correct | incorrect | unknown | completions |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {v['correct']} | {v['incorrect']} | {v['unknown']} | "
            f"{sum(c.completions for c in outputs[name].costs)} |"
            for name, v in verdicts.items()
        ),
        "",
        f"Same first wrong step (or none) in both runs: {agree}/{len(items)}. Why `unknown` (pipelined run): "
        + "; ".join(
            f"{count}x {why}"
            for why, count in Counter(
                (lab.reason or "").split(":")[0] for lab in outputs["pipelined"].step_labels if lab.verdict == "unknown"
            ).most_common(3)
        )
        + ".",
        "",
        f"Reproduce: `.venv/bin/python bench/mc_fill.py {N_ROLLOUTS} {MAX_NUM_SEQS}`",
    ]
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
