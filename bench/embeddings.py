"""Bench: sentence embeddings in float32 vs bfloat16 on this machine's CPU.

Embeds real solution texts (ProcessBench GSM8K: single steps and whole
solutions) with the packaged all-MiniLM-L6-v2 in both dtypes, reports texts/s
and how closely the bf16 vectors agree with float32 (cosine), next to the CPU
flags that decide `embedding_dtype: auto` (generators/hardware.py).
Writes bench/reports/embeddings.md.
Run: .venv/bin/python bench/embeddings.py [N_TEXTS]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rmforge.generators.hardware import cpu_model

N_TEXTS = int(sys.argv[1]) if len(sys.argv) > 1 else 128
BATCH_SIZE = 64
DATA = Path(os.environ.get("PROCESSBENCH", Path(__file__).resolve().parents[2] / "shared/data/processbench/gsm8k.json"))
REPORT = Path(__file__).parent / "reports" / "embeddings.md"


def main() -> None:
    import numpy as np
    import torch

    from rmforge.generators.embeddings import load_embedder
    from rmforge.generators.hardware import NATIVE_BF16_FLAGS, cpu_flags, native_bf16, resolve_dtype

    records = json.loads(DATA.read_text(encoding="utf-8"))
    corpora = {
        "steps": [step for r in records for step in r["steps"]][:N_TEXTS],
        # Whole solutions are ~6x longer: a quarter as many keeps the bf16 run in minutes.
        "solutions": ["\n".join(r["steps"]) for r in records][: max(1, N_TEXTS // 4)],
    }
    rows, agreement = [], {}
    for name, texts in corpora.items():
        vectors = {}
        for dtype in ("float32", "bfloat16"):
            model = load_embedder(None, dtype, "cpu")
            model.encode(texts[:8], batch_size=BATCH_SIZE)  # warm-up: first call allocates
            start = time.perf_counter()
            vectors[dtype] = model.encode(
                texts, batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True
            ).astype(np.float32)
            seconds = time.perf_counter() - start
            rows.append((name, dtype, len(texts), seconds, len(texts) / seconds))
            print(rows[-1], flush=True)
        cosines = np.sum(vectors["float32"] * vectors["bfloat16"], axis=1)
        agreement[name] = (float(cosines.mean()), float(cosines.min()))

    flags = cpu_flags()
    chars = {name: sum(map(len, texts)) / len(texts) for name, texts in corpora.items()}
    speed = {(n, d): s for n, d, _, _, s in rows}
    lines = [
        "# Embedding dtype bench",
        "",
        f"Model: packaged all-MiniLM-L6-v2 (sentence-transformers), batch {BATCH_SIZE}, device cpu, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs.",
        f"Texts: ProcessBench GSM8K ({DATA.name}): the first {len(corpora['steps'])} steps "
        f"(mean {chars['steps']:.0f} chars) and the first {len(corpora['solutions'])} whole solutions "
        f"(mean {chars['solutions']:.0f} chars).",
        "",
        f"CPU: {cpu_model()}; native bf16 flags present: "
        f"{', '.join(sorted(NATIVE_BF16_FLAGS & flags)) or 'none'} (looked for {', '.join(sorted(NATIVE_BF16_FLAGS))}); "
        f"avx2: {'avx2' in flags}, avx512f: {'avx512f' in flags}.",
        f"`embedding_dtype: auto` resolves to **{resolve_dtype('auto', 'cpu')}** here (native_bf16 = {native_bf16()}).",
        "",
        "| texts | dtype | n | seconds | texts/s |",
        "|---|---|---|---|---|",
        *[f"| {n} | {d} | {c} | {s:.1f} | {r:.2f} |" for n, d, c, s, r in rows],
        "",
        "| texts | float32 / bf16 speed | cosine(float32, bf16) mean | min |",
        "|---|---|---|---|",
        *[
            f"| {n} | {speed[(n, 'float32')] / speed[(n, 'bfloat16')]:.1f}x | {m:.4f} | {lo:.4f} |"
            for n, (m, lo) in agreement.items()
        ],
        "bf16 vectors are normalised in bf16, so their norms (and these cosines) can exceed 1 by ~0.001.",
        "",
        f"Load average while measuring (shared machine): {os.getloadavg()[0]:.1f}.",
        "",
        f"Reproduce: `.venv/bin/python bench/embeddings.py {N_TEXTS}`",
        "",
    ]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines), encoding="utf-8")
    print(REPORT.read_text())


if __name__ == "__main__":
    main()
