"""Bench: near-duplicate search over 100,000 embeddings without an all-pairs matrix.

Data: random unit vectors of dim 384 (MiniLM's size) with planted near-duplicates
(a copy of an earlier vector plus noise, cosine ~0.97). Random vectors are the hard
case for a graph index: no clusters, every point nearly orthogonal to the rest.
Real embeddings were not used: at this machine's ~2-20 texts/s, 100,000 texts
would take hours to embed.

Reports the HNSW build time (usearch, the index tasks/dedupe.py uses), the time to
query every vector for its nearest neighbours, recall@k against exact search
(on a sample of queries; exact search of the whole set is extrapolated from it),
and the share of planted duplicates found by tasks.dedupe.first_kept.
Writes bench/reports/ann.md.
Run: .venv/bin/python bench/ann.py [N] [PLANTED]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
    start = time.perf_counter()
    truth, _ = dedupe.nearest(vectors[sample], vectors, K, exact=True)
    exact_seconds = time.perf_counter() - start

    start = time.perf_counter()
    index = dedupe.hnsw_index(vectors)
    build_seconds = time.perf_counter() - start
    print("build", build_seconds, flush=True)
    rows, neighbours = [], {}
    for expansion in EXPANSIONS:
        index.expansion_search = expansion
        start = time.perf_counter()
        neighbours[expansion] = dedupe.search_index(index, vectors, dedupe.NEIGHBOURS + 1)
        query_seconds = time.perf_counter() - start
        keys = neighbours[expansion][0][sample, :K]
        recall = np.mean([len(set(a) & set(t)) / K for a, t in zip(keys, truth)])
        rows.append((expansion, query_seconds, recall))
        print(rows[-1], flush=True)

    # The dedupe rule itself on the HNSW neighbours (what first_kept does above EXACT_SEARCH_LIMIT rows).
    start = time.perf_counter()
    marked = dedupe.mark_first_kept(*neighbours[dedupe.HNSW["expansion_search"]], THRESHOLD)
    greedy_seconds = time.perf_counter() - start
    found = sum(1 for i, s in zip(range(N - PLANTED, N), sources) if marked[i] and marked[i][0] == s)
    false_marks = sum(1 for m in marked[: N - PLANTED] if m is not None)

    lines = [
        "# Near-duplicate search bench (ANN)",
        "",
        f"{N:,} random unit vectors of dim {DIM}, of which {PLANTED:,} are planted near-duplicates of earlier "
        f"ones (cosine to the original: mean {planted_cos.mean():.3f}, min {planted_cos.min():.3f}). "
        f"Index: usearch HNSW, f16 storage, inner product, {dedupe.HNSW}.",
        f"Machine: {_cpu_model()}, {os.cpu_count()} CPUs (AVX2, no AVX-512), shared with other jobs: "
        f"load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        f"- Build: {build_seconds:.1f} s ({N / build_seconds:,.0f} vectors/s).",
        f"- Exact search (blocked matrix product) for {SAMPLE_QUERIES:,} sample queries: {exact_seconds:.1f} s, "
        f"so all {N:,} queries would take ~{exact_seconds * N / SAMPLE_QUERIES:.0f} s.",
        "",
        f"| expansion_search | query all {N:,} (top-{dedupe.NEIGHBOURS + 1}) s | per 1,000 queries s "
        f"| recall@{K} vs exact ({SAMPLE_QUERIES:,} queries) |",
        "|---|---|---|---|",
        *[f"| {e} | {s:.1f} | {s * 1000 / N:.2f} | {r:.4f} |" for e, s, r in rows],
        "",
        f"Greedy near-duplicate pass (tasks.dedupe.mark_first_kept, threshold {THRESHOLD}) over the "
        f"expansion_search {dedupe.HNSW['expansion_search']} neighbours: {greedy_seconds:.1f} s; planted "
        f"duplicates found as duplicates of their original: {found:,}/{PLANTED:,} ({found / PLANTED:.4f}); "
        f"random vectors wrongly marked: {false_marks}.",
        "",
        f"Reproduce: `.venv/bin/python bench/ann.py {N} {PLANTED}`",
        "",
    ]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines), encoding="utf-8")
    print(REPORT.read_text())


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
