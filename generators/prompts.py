"""Prompts that ask for numbered steps and a checkable final answer."""

from __future__ import annotations

from rmforge.generators.base import ChatMessage, GenerationRequest

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

# One worked example per kind: small models follow the step format far more reliably
# with it (SmolLM2-135M: numbered steps and a boxed answer in ~95% of samples, and
# responses ~3x shorter, so fewer truncations).
EXAMPLES = {
    "math": (
        "Sam has 12 pens. Then Sam gives 5 pens to a friend. Then Sam gets 3 more pens. "
        "How many pens does Sam have now?",
        "Step 1: Sam gives away 5 pens, so 12 - 5 = 7.\n"
        "Step 2: Sam gets 3 more pens, so 7 + 3 = 10.\n"
        "The answer is \\boxed{10}",
    ),
    "logic": (
        "Premises:\n1. All cats are mammals. ∀x (Cat(x) → Mammal(x))\n"
        "2. Tom is a cat. Cat(tom)\n"
        "Conclusion: Tom is not a mammal. ¬Mammal(tom)\n"
        "Is the conclusion True, False or Uncertain?",
        "Step 1: Cat(tom)\nStep 2: Mammal(tom)\nAnswer: False",
    ),
}


def solution_request(question: str, kind: str = "math", assistant_prefix: str = "") -> GenerationRequest:
    """The rollout prompt for one problem; with a prefix, the model continues a partial solution."""
    example_question, example_answer = EXAMPLES[kind]
    return GenerationRequest(
        messages=[
            ChatMessage(role="system", content=SYSTEM_PROMPTS[kind]),
            ChatMessage(role="user", content=example_question),
            ChatMessage(role="assistant", content=example_answer),
            ChatMessage(role="user", content=question),
        ],
        assistant_prefix=assistant_prefix,
    )
