"""LLM backends behind one `Generator` interface, loaded once per process."""

from __future__ import annotations

import threading

from generators.base import Generator
from schemas.config import GeneratorConfig

_LOADED: dict[str, Generator] = {}
_LOCK = threading.Lock()


def load_generator(config: GeneratorConfig) -> Generator:
    """The backend for `config`, shared by every caller in this process.

    Engines are expensive to start (tens of seconds, GBs of memory): rollouts, MC
    completions and judges that name the same model share one engine.
    """
    key = config.model_dump_json()
    with _LOCK:
        if key not in _LOADED:
            if config.backend == "vllm":
                from generators.vllm_engine import VLLMEngineGenerator

                _LOADED[key] = VLLMEngineGenerator(config)
            else:
                from generators.openai_server import OpenAIServerGenerator

                _LOADED[key] = OpenAIServerGenerator(config)
        return _LOADED[key]


def close_generators() -> None:
    with _LOCK:
        for generator in _LOADED.values():
            generator.close()
        _LOADED.clear()
