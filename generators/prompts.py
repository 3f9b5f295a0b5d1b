"""Prompts that ask for numbered steps and a checkable final answer."""

from __future__ import annotations

from generators.base import ChatMessage, GenerationRequest

MATH_SYSTEM = (
    "You are a careful math tutor. Solve the problem step by step. "
    "Write each step on its own line as 'Step 1:', 'Step 2:', ... and show the arithmetic "
    "of each step (for example 'Step 2: 16 - 3 = 13'). "
    "Finish with a last line 'The answer is \\boxed{N}'."
)

LOGIC_SYSTEM = (
    "You are a careful logician. Decide whether the conclusion follows from the premises. "
    "Reason step by step. Write each step on its own line as 'Step k: <formula>' where the "
    "formula is first-order logic in the notation of the premises "
    "(∀x, ∃x, ∧, ∨, ¬, →, ↔, ⊕, predicates like Smart(x), constants like rina), "
    "each derived from the premises and earlier steps. "
    "Finish with a last line 'Answer: True', 'Answer: False' or 'Answer: Uncertain'."
)

SYSTEM_PROMPTS = {"math": MATH_SYSTEM, "logic": LOGIC_SYSTEM}


def solution_request(question: str, kind: str = "math", assistant_prefix: str = "") -> GenerationRequest:
    """The rollout prompt for one problem; with a prefix, the model continues a partial solution."""
    return GenerationRequest(
        messages=[
            ChatMessage(role="system", content=SYSTEM_PROMPTS[kind]),
            ChatMessage(role="user", content=question),
        ],
        assistant_prefix=assistant_prefix,
    )
