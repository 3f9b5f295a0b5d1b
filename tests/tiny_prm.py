"""A tiny randomly initialised process reward model, built offline in a test.

Qwen2.5-Math-PRM's layout at toy size: a Qwen2 body, a two-layer score head (Linear, ReLU,
Linear to 2 classes) read at every step-separator token, architecture
`Qwen2ForProcessRewardModel` so vLLM's pooling runner loads it. The tokenizer is a byte-level
BPE trained in-process, with ChatML's special tokens and the separator `<extra_0>`.

`ReferencePRM.step_probabilities` is the same computation in plain torch/transformers: the scores vLLM's
path and the HTTP test server must reproduce.
"""

from __future__ import annotations

import json
from pathlib import Path

SEPARATOR = "<extra_0>"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CORPUS = [
    "Step 1: 3 + 4 = 7. Step 2: 7 * 2 = 14. The answer is 14.",
    "Sam has 12 apples and gives away 5, so he has 7 left. Please reason step by step.",
    "What is 6 * 7? 6 * 7 = 42. Put your final answer within \\boxed{42}.",
    "system user assistant question answer step total sum difference product",
]


def build_tiny_prm(folder: Path, *, seed: int = 0) -> Path:
    """Write the model (float32 safetensors, config, tokenizer) to `folder`; returns it."""
    import torch
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2Model

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", SEPARATOR]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[SEPARATOR],
    )
    fast.chat_template = CHAT_TEMPLATE
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)

    config = Qwen2Config(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 32: one vLLM's CPU attention supports
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=fast.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"),
    )
    torch.manual_seed(seed)
    body = Qwen2Model(config)
    head = _score_head(config.hidden_size)
    weights = {f"model.{k}": v.contiguous() for k, v in body.state_dict().items()}
    weights.update({f"score.{k}": v.contiguous() for k, v in head.state_dict().items()})
    save_file(weights, str(folder / "model.safetensors"))
    config_dict = config.to_dict()
    config_dict.update(architectures=["Qwen2ForProcessRewardModel"], num_labels=2, torch_dtype="float32")
    (folder / "config.json").write_text(json.dumps(config_dict, indent=1))
    return folder


def _score_head(hidden_size: int):
    from torch import nn

    # Qwen2.5-Math-PRM's head: hidden -> hidden -> 2 classes (biases included).
    return nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 2))


class ReferencePRM:
    """The tiny model run by transformers and torch alone: chat template, forward, softmax at
    each separator token."""

    def __init__(self, folder: Path) -> None:
        import torch
        from safetensors.torch import load_file
        from transformers import AutoTokenizer, Qwen2Config, Qwen2Model

        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        config = Qwen2Config.from_pretrained(folder)
        weights = load_file(str(folder / "model.safetensors"))
        self.body = Qwen2Model(config).eval()
        self.body.load_state_dict({k[len("model.") :]: v for k, v in weights.items() if k.startswith("model.")})
        self.head = _score_head(config.hidden_size).eval()
        self.head.load_state_dict({k[len("score.") :]: v for k, v in weights.items() if k.startswith("score.")})
        self.separator_id = self.tokenizer.convert_tokens_to_ids(SEPARATOR)
        self.max_len = config.max_position_embeddings
        self._torch = torch

    def token_ids(self, messages: list[dict]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def step_probabilities(self, messages: list[dict]) -> list[list[float]]:
        """[p(class 0), p(class 1)] at each separator token, in order."""
        torch = self._torch
        ids = self.token_ids(messages)
        with torch.no_grad():
            hidden = self.body(input_ids=torch.tensor([ids])).last_hidden_state[0]
            probabilities = torch.softmax(self.head(hidden), dim=-1)
        positions = [i for i, token in enumerate(ids) if token == self.separator_id]
        return probabilities[positions].tolist()
