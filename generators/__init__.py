"""LLM backends behind one `Generator` interface, loaded once per process."""

from __future__ import annotations

import threading

from rmforge.generators.base import BackendUnavailable, Generator
from rmforge.schemas.config import GeneratorConfig

_LOADED: dict[str, Generator] = {}
_LOCK = threading.Lock()


def load_generator(config: GeneratorConfig) -> Generator:
    """The backend for `config`, shared by every caller in this process.

    Engines are expensive to start (tens of seconds, GBs of memory): rollouts, MC
    completions and judges that name the same model share one engine.

    Raises `BackendUnavailable` however the start fails (a spawn-time RuntimeError, a model
    that does not load, CUDA out of memory): callers must not mistake it for a failure of
    the requests they were about to send.
    """
    key = config.model_dump_json()
    with _LOCK:
        if key not in _LOADED:
            try:
                _LOADED[key] = _start_backend(config)
            except BackendUnavailable:
                raise
            except Exception as error:  # whatever the engine raised, it did not start
                # Cut: vLLM's errors can list every architecture it supports; the cause is chained.
                raise BackendUnavailable(
                    f"the {config.backend} backend for {config.model} did not start: "
                    f"{type(error).__name__}: {str(error)[:300]}"
                ) from error
        return _LOADED[key]


def _start_backend(config: GeneratorConfig) -> Generator:
    if config.backend == "vllm":
        from rmforge.generators.vllm_engine import VLLMEngineGenerator

        return VLLMEngineGenerator(config)
    from rmforge.generators.openai_server import OpenAIServerGenerator

    return OpenAIServerGenerator(config)


def close_generators() -> None:
    with _LOCK:
        for generator in _LOADED.values():
            generator.close()
        _LOADED.clear()
