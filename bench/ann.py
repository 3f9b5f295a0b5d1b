"""Bench: near-duplicate search over 100,000 embeddings without an all-pairs matrix.

Data: random unit vectors of dim 384 (MiniLM's size) with planted near-duplicates
(a copy of an earlier vector plus noise, cosine ~0.97). Random vectors are the hard
case for a graph index: no clusters, every point nearly orthogonal to the rest.
Real embeddings were not used: at this machine's ~2-20 texts/s, 100,000 texts
would take hours to embed.

Reports the HNSW build time (usearch, the index tasks/dedupe.py uses), query time
and recall@k against exact search for a sample of queries (exact search of the
whole set is extrapolated from it), and the share of planted duplicates whose
original is among the neighbours tasks.dedupe.first_kept reads.
Writes bench/reports/ann.md.
Run: .venv/bin/python bench/ann.py [N] [PLANTED]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generators.hardware import cpu_model  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
PLANTED = int(sys.argv[2]) if len(sys.argv) > 2 else 5_000
DIM = 384
K = 10
SAMPLE_QUERIES = 1_000
NOISE = 0.012  # per coordinate; cosine to the original ~0.97 at dim 384
THRESHOLD = 0.95
EXPANSIONS = (64, 128, 256)
REPORT = Path(__file__).parent / "reports" / "ann.md"


def main() -> None:
    import numpy as np
    from tasks import dedupe

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((N, DIM), dtype=np.float32)
    sources = rng.choice(N - PLANTED, PLANTED, replace=False)
    vectors[N - PLANTED :] = vectors[sources] / np.linalg.norm(vectors[sources], axis=1, keepdims=True) * np.sqrt(DIM) \
        + rng.standard_normal((PLANTED, DIM), dtype=np.float32) * NOISE * np.sqrt(DIM)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    planted_cos = np.sum(vectors[N - PLANTED :] * vectors[sources], axis=1)

    sample = rng.choice(N, SAMPLE_QUERIES, replace=False)
    exact_wall, exact_cpu, (truth, _) = timed(dedupe.nearest, vectors[sample], vectors, K, exact=True)
    print("exact", exact_wall, flush=True)
    build_wall, build_cpu, index = timed(dedupe.hnsw_index, vectors)
    print("build", build_wall, flush=True)
    rows = []
    for expansion in EXPANSIONS:
        index.expansion_search = expansion
        wall, cpu, (keys, _) = timed(dedupe.search_index, index, vectors[sample], K)
        recall = np.mean([len(set(a) & set(t)) / K for a, t in zip(keys, truth)])
        rows.append((expansion, wall, cpu, recall))
        print(rows[-1], flush=True)

    # Do the planted copies find their original among the neighbours the dedupe rule reads?
    index.expansion_search = dedupe.HNSW["expansion_search"]
    copies = np.arange(N - PLANTED, N)
    planted_wall, planted_cpu, (keys, sims) = timed(dedupe.search_index, index, vectors[copies], dedupe.NEIGHBOURS + 1)
    found = sum(1 for row, sim, s in zip(keys, sims, sources) if any(k == s and v >= THRESHOLD for k, v in zip(row, sim)))

    lines = [
        "# Near-duplicate search bench (ANN)",
        "",
        f"{N:,} random unit vectors of dim {DIM}, of which {PLANTED:,} are planted near-duplicates of earlier "
        f"ones (cosine to the original: mean {planted_cos.mean():.3f}, min {planted_cos.min():.3f}). "
        f"Index: usearch HNSW, f16 storage, inner product, {dedupe.HNSW}.",
        f"Machine: {cpu_model()}, {os.cpu_count()} CPUs (AVX2, no AVX-512), shared with other jobs: "
        f"load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "Times are wall seconds (CPU seconds of this process in brackets): the machine was shared, so wall "
        "time includes waiting for a core.",
        "",
        f"- Build: {build_wall:.1f} s ({build_cpu:.1f} CPU s), {N / build_wall:,.0f} vectors/s.",
        f"- Exact search (blocked matrix product, tasks.dedupe.nearest) for {SAMPLE_QUERIES:,} queries: "
        f"{exact_wall:.1f} s ({exact_cpu:.1f} CPU s); all {N:,} queries would take ~{exact_wall * N / SAMPLE_QUERIES:.0f} s.",
        "",
        f"| expansion_search | {SAMPLE_QUERIES:,} queries, top-{K}: s (CPU s) | recall@{K} vs exact |",
        "|---|---|---|",
        *[f"| {e} | {w:.1f} ({c:.1f}) | {r:.4f} |" for e, w, c, r in rows],
        "",
        f"Planted duplicates: each of the {PLANTED:,} copies queried for its top-{dedupe.NEIGHBOURS + 1} "
        f"(expansion_search {dedupe.HNSW['expansion_search']}, as tasks.dedupe.first_kept does above "
        f"{dedupe.EXACT_SEARCH_LIMIT:,} rows) in {planted_wall:.1f} s ({planted_cpu:.1f} CPU s); its original found "
        f"with cosine >= {THRESHOLD}: {found:,}/{PLANTED:,} ({found / PLANTED:.4f}).",
        "",
        f"Reproduce: `.venv/bin/python bench/ann.py {N} {PLANTED}`",
        "",
    ]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines), encoding="utf-8")
    print(REPORT.read_text())


def timed(fn, *args, **kwargs):
    """(wall seconds, CPU seconds of this process, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu, result



if __name__ == "__main__":
    main()
