"""Bench: vLLM generation on this machine's CPU, by dtype and by the cores the engine's threads use.

The demo's shape (PipelineConfig defaults: problems x samples, max_tokens) through the packaged
SmolLM2-135M-Instruct, the same prompts and engine seed for every variant, one engine (child
process) per variant, run back to back. Engine start is not measured. Variants:

  bf16-all     bfloat16, threads bound to every core this process may use (rmforge's default)
  f32-all      float32, every core
  bf16-1core   bfloat16, threads bound to one core (VLLM_CPU_OMP_THREADS_BIND=<first core>)
  bf16-auto    bfloat16, vLLM's own binding (VLLM_CPU_OMP_THREADS_BIND=auto: before rmforge set it,
               the engine got core 0 and a core was reserved for the front end)

Reports the CPU flags, machine load (uptime) around each run, tokens, wall time, tokens/s and
tokens per CPU-second of the engine processes (less sensitive to other load on a shared machine),
and the ratios bf16/f32 and all cores/one core measured in the same run.
Writes bench/reports/vllm_cpu.md.
Run: PYTHONPATH=$PWD .venv/bin/python bench/vllm_cpu.py [VARIANT ...]   (default: all four)
     PYTHONPATH=$PWD .venv/bin/python bench/vllm_cpu.py --report   (rewrite the report from saved results)
(the engine runs in a child process: keep the __main__ guard)
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REPORT = Path(__file__).parent / "reports" / "vllm_cpu.md"
LOG_DIR = Path(tempfile.gettempdir()) / "rmforge-bench-vllm-cpu"  # each engine's stderr and result


def variants() -> dict[str, tuple[str, dict[str, str]]]:
    """Variant name -> (dtype, environment for the engine)."""
    from rmforge.generators.vllm_engine import cpu_list

    cores = os.sched_getaffinity(0)
    every = {"VLLM_CPU_OMP_THREADS_BIND": cpu_list(cores), "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    return {
        "bf16-all": ("bfloat16", every),
        "f32-all": ("float32", every),
        "bf16-1core": ("bfloat16", {"VLLM_CPU_OMP_THREADS_BIND": str(min(cores)), "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}),
        "bf16-auto": ("bfloat16", {"VLLM_CPU_OMP_THREADS_BIND": "auto"}),
    }


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def cpu_seconds(process) -> float:
    """User + system CPU time of `process` and its live descendants (the vLLM engine core)."""
    import psutil

    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def measure(variant: str) -> dict:
    """Generate the demo's rollouts with one engine as `variant` says (run in its own process)."""
    import psutil

    from rmforge.generators import close_generators, load_generator
    from rmforge.generators.prompts import solution_request
    from rmforge.problems.arithmetic import generate_arithmetic_problems
    from rmforge.schemas.config import PipelineConfig

    config = PipelineConfig()
    source, sampling = config.problems, config.sampling
    problems = generate_arithmetic_problems(source.count, source.seed, source.min_steps, source.max_steps)
    requests = [solution_request(p.question, p.domain) for p in problems]
    dtype, _ = variants()[variant]
    t0 = time.perf_counter()
    engine = load_generator(config.generator.model_copy(update={"dtype": dtype}))
    started = time.perf_counter() - t0
    me = psutil.Process()
    load_before, cpu0, t1 = uptime(), cpu_seconds(me), time.perf_counter()
    outputs = engine.generate(requests, sampling)
    seconds, cpu = time.perf_counter() - t1, cpu_seconds(me) - cpu0
    load_after = uptime()
    raw = raw_generate(engine, requests, sampling) if variant == "bf16-all" else None
    close_generators()
    completions = [c for out in outputs for c in out]
    tokens = sum(c.num_tokens for c in completions)
    return {
        "raw": raw,
        "variant": variant,
        "binding": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", ""),
        "dtype": engine.dtype,
        "problems": len(problems),
        "samples": sampling.n,
        "max_tokens": sampling.max_tokens,
        "completions": len(completions),
        "tokens": tokens,
        "truncated": sum(c.finish_reason == "length" for c in completions),
        "engine_start_s": started,
        "generate_s": seconds,
        "cpu_s": cpu,
        "load_before": load_before,
        "load_after": load_after,
    }


def raw_generate(engine, requests, sampling) -> dict:
    """vLLM's own `LLM.generate` of the same prompts on the same (warm) engine: what rmforge's
    generate adds (chat template, length checks, result objects) shows as the ratio."""
    from vllm import SamplingParams

    prompts = [engine.render_prompt(r) for r in requests]
    params = SamplingParams(
        n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_tokens
    )
    started = time.perf_counter()
    outputs = engine._llm.generate(prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - started
    return {"tokens": sum(len(c.token_ids) for o in outputs for c in o.outputs), "generate_s": seconds}


def run_child(variant: str) -> dict:
    env = {**os.environ, **variants()[variant][1]}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    # On a loaded machine one emulated-bf16 step of the whole batch can outlast vLLM's 300 s default.
    env.setdefault("VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS", "3600")
    LOG_DIR.mkdir(exist_ok=True)
    out, log = LOG_DIR / f"{variant}.json", LOG_DIR / f"{variant}.log"
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    with log.open("w") as stderr:  # not stdout/stderr of this script: the engine logs a lot
        proc = subprocess.run(
            [sys.executable, __file__, "--child", variant, str(out)], env=env, stdout=stderr, stderr=subprocess.STDOUT
        )
    if proc.returncode != 0:
        raise SystemExit(f"{variant} run failed (exit {proc.returncode}), see {log}")
    result = json.loads(out.read_text())
    result["total_s"] = time.perf_counter() - t0  # the whole process, engine start and exit included
    out.write_text(json.dumps(result))
    return result


def saved_result(variant: str) -> dict:
    return json.loads((LOG_DIR / f"{variant}.json").read_text())


def cpu_description() -> list[str]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    keep = ("Model name", "CPU(s):", "Thread(s) per core", "Flags")
    return [line.strip() for line in lscpu if line.strip().startswith(keep)]


def main(names: list[str], measure_now: bool = True) -> None:
    results = []
    for name in names:
        results.append(run_child(name) if measure_now else saved_result(name))
        print(json.dumps(results[-1]), flush=True)
    first = results[0]
    lines = [
        "# vLLM on CPU: dtype and cores",
        "",
        f"Model `smollm2-135m-instruct` (SmolLM2-135M-Instruct) via vLLM {_vllm_version()} on CPU, "
        f"the demo's shape: {first['problems']} arithmetic problems x {first['samples']} samples, "
        f"max_tokens {first['max_tokens']}, same prompts, engine seed 0; one engine per variant, "
        "run back to back; engine start not counted. "
        "`tokens/CPU-s` divides by the user+system time of the engine processes, "
        "which other load on the machine inflates less than wall time.",
        "",
        f"Host: {platform.node()}, {os.cpu_count()} CPUs.",
        "",
        "```",
        *cpu_description(),
        "```",
        "",
        "| variant | dtype | threads bound to | completions | tokens | truncated | engine start s | generate s "
        "| tokens/s | CPU s | tokens/CPU-s | total s (process) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        total = f"{r['total_s']:.0f}" if "total_s" in r else "-"
        lines.append(
            f"| {r['variant']} | {r['dtype']} | {r['binding']} | {r['completions']} | {r['tokens']} | {r['truncated']} "
            f"| {r['engine_start_s']:.0f} | {r['generate_s']:.1f} | {r['tokens'] / r['generate_s']:.1f} "
            f"| {r['cpu_s']:.0f} | {r['tokens'] / r['cpu_s']:.1f} | {total} |"
        )
    lines += ["", "Machine load (`uptime`) around each generation:", ""]
    for r in results:
        lines += [f"- {r['variant']}: before `{r['load_before']}`", f"  after `{r['load_after']}`"]
    by_name = {r["variant"]: r for r in results}
    speed = lambda r: r["tokens"] / r["generate_s"]  # noqa: E731
    per_cpu = lambda r: r["tokens"] / r["cpu_s"]  # noqa: E731
    lines.append("")
    for new, base, what in (
        ("bf16-all", "f32-all", "bfloat16 / float32"),
        ("bf16-all", "bf16-1core", "every core / one core"),
        ("bf16-all", "bf16-auto", "every core / vLLM's auto binding"),
    ):
        if {new, base} <= set(by_name):
            lines.append(
                f"- {what}: {speed(by_name[new]) / speed(by_name[base]):.2f}x tokens/s, "
                f"{per_cpu(by_name[new]) / per_cpu(by_name[base]):.2f}x tokens per CPU-second."
            )
    raw = by_name.get("bf16-all", {}).get("raw")
    if raw:
        lines.append(
            f"- rmforge's generate / vLLM's own `LLM.generate` of the same prompts on the same engine (run after it, "
            f"so its prompts were cached): {speed(by_name['bf16-all']) / speed(raw):.2f}x tokens/s "
            f"({speed(raw):.1f} tokens/s raw)."
        )
    lines += [
        "",
        "`GeneratorConfig.dtype: auto` picks bfloat16 where the CPU has native bf16 (avx512_bf16, amx_bf16, "
        "Arm bf16) and float32 elsewhere (generators/hardware.py); on a CPU without it bf16 is emulated and "
        "several times slower. rmforge binds the engine's threads to every core of its affinity unless "
        "VLLM_CPU_OMP_THREADS_BIND is set (generators/vllm_engine.py).",
        "",
        "Reproduce: `PYTHONPATH=$PWD .venv/bin/python bench/vllm_cpu.py`",
    ]
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _vllm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("vllm-cpu", "vllm"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "?"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        Path(sys.argv[3]).write_text(json.dumps(measure(sys.argv[2])))
    elif sys.argv[1:2] == ["--report"]:  # from the results of the last run
        main(sys.argv[2:] or list(variants()), measure_now=False)
    else:
        main(sys.argv[1:] or list(variants()))
