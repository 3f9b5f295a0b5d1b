"""LLM backends behind one `Generator` interface and process reward models behind one `Scorer`
interface (generators/scorers.py), each loaded once per process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from rmforge.generators.base import BackendUnavailable, Generator
from rmforge.schemas.config import GeneratorConfig, ScorerConfig

if TYPE_CHECKING:
    from rmforge.generators.scorers import Scorer

_LOADED: dict[str, Generator] = {}
_LOADED_SCORERS: dict[str, Scorer] = {}
_LOCK = threading.Lock()
_Backend = TypeVar("_Backend")


def load_generator(config: GeneratorConfig) -> Generator:
    """The backend for `config`, shared by every caller in this process.

    Engines are expensive to start (tens of seconds, GBs of memory): rollouts, MC
    completions and judges that name the same model share one engine.

    Raises `BackendUnavailable` however the start fails (a spawn-time RuntimeError, a model
    that does not load, CUDA out of memory): callers must not mistake it for a failure of
    the requests they were about to send.
    """
    return _load(_LOADED, config, _start_backend)


def load_scorer(config: ScorerConfig) -> Scorer:
    """The process reward model backend for `config`, shared like `load_generator`'s."""
    if not config.model:
        raise BackendUnavailable("the scorer needs a model (scorer.model: a process reward model)")
    return _load(_LOADED_SCORERS, config, _start_scorer)


def _load(loaded: dict[str, _Backend], config: GeneratorConfig, start: Callable[..., _Backend]) -> _Backend:
    key = config.model_dump_json()
    with _LOCK:
        if key not in loaded:
            try:
                loaded[key] = start(config)
            except BackendUnavailable:
                raise
            except Exception as error:  # whatever the engine raised, it did not start
                # Cut: vLLM's errors can list every architecture it supports; the cause is chained.
                raise BackendUnavailable(
                    f"the {config.backend} backend for {config.model} did not start: "
                    f"{type(error).__name__}: {str(error)[:300]}"
                ) from error
        return loaded[key]


def _start_backend(config: GeneratorConfig) -> Generator:
    if config.backend == "vllm":
        from rmforge.generators.vllm_engine import VLLMEngineGenerator

        return VLLMEngineGenerator(config)
    from rmforge.generators.openai_server import OpenAIServerGenerator

    return OpenAIServerGenerator(config)


def _start_scorer(config: ScorerConfig) -> Scorer:
    if config.backend == "vllm":
        from rmforge.generators.vllm_scorer import VLLMScorer

        return VLLMScorer(config)
    from rmforge.generators.http_scorer import HTTPScorer

    return HTTPScorer(config)


def close_generators() -> None:
    """Stop every engine and client this process loaded, generators and scorers."""
    with _LOCK:
        backends: list[Generator | Scorer] = [*_LOADED.values(), *_LOADED_SCORERS.values()]
        for backend in backends:
            backend.close()
        _LOADED.clear()
        _LOADED_SCORERS.clear()
