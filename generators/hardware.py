"""Pick numeric precision from the hardware a model runs on.

bf16 halves memory and is fast where the hardware computes it natively (CUDA
GPUs, CPUs with AVX512-BF16 or AMX, Arm CPUs with BF16). Elsewhere PyTorch and
vLLM emulate it, and it is several times slower than float32: measured on an
AVX2-only AMD EPYC, MiniLM embeddings ran ~5x slower and vLLM decoding ~4x
slower in bf16 (bench/reports/embeddings.md).
"""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

# x86 flags (Intel/AMD) and the Arm feature name for native bf16 arithmetic.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})

DTYPES = ("auto", "float32", "bfloat16", "float16")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags ("flags" on x86, "Features" on Arm); empty where unreadable."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return frozenset(flags)


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name ("AMD EPYC"), for benchmark reports; "unknown" where unreadable."""
    try:
        lines = cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "unknown"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")


def native_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """True when the CPU computes bf16 natively (not emulated through float32)."""
    return not NATIVE_BF16_FLAGS.isdisjoint(cpu_flags(cpuinfo))


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_dtype(setting: str, device: str = "cpu", cpuinfo: Path = CPUINFO) -> str:
    """The dtype to load a model with on `device` ("cpu" or "cuda...").

    `auto`: bfloat16 on CUDA and on CPUs with native bf16, float32 otherwise.
    Any other setting is an explicit choice and is returned as is.
    """
    if setting not in DTYPES:
        raise ValueError(f"dtype: {setting!r} is not one of {', '.join(DTYPES)}")
    if setting != "auto":
        return setting
    if device.startswith("cuda") or native_bf16(cpuinfo):
        return "bfloat16"
    return "float32"
