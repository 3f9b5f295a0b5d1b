import pytest

from rmforge.schemas.config import StepSplitConfig
from rmforge.tasks.steps import split_steps


def test_numbered_steps_with_preamble_and_final_line():
    text = "Let's solve it.\nStep 1: 16 - 3 = 13\nStep 2: 13 - 4 = 9\nThe answer is \\boxed{9}"
    steps = split_steps(text)
    assert steps == ["Let's solve it.", "Step 1: 16 - 3 = 13", "Step 2: 13 - 4 = 9\nThe answer is \\boxed{9}"]


def test_numbered_list_markers():
    text = "1. First 2 + 2 = 4\n2. Then 4 * 3 = 12\n3. So 12."
    assert split_steps(text) == ["1. First 2 + 2 = 4", "2. Then 4 * 3 = 12", "3. So 12."]


def test_decimals_are_not_step_markers():
    text = "The price is 3.50 dollars.\nSo 2 * 3.50 = 7.00"
    assert split_steps(text) == ["The price is 3.50 dollars.", "So 2 * 3.50 = 7.00"]


def test_paragraphs_when_no_markers():
    text = "First we add.\n3 + 4 = 7\n\nThen we double.\n7 * 2 = 14\n\n#### 14"
    assert split_steps(text) == ["First we add.\n3 + 4 = 7", "Then we double.\n7 * 2 = 14", "#### 14"]


def test_lines_when_single_paragraph():
    assert split_steps("a = 1\nb = 2\n\n") == ["a = 1", "b = 2"]


@pytest.mark.parametrize(
    "mode,expected",
    [
        ("lines", ["Step 1: a", "bb", "Step 2: c"]),
        ("numbered", ["Step 1: a\nbb", "Step 2: c"]),
        ("paragraphs", ["Step 1: a\nbb\nStep 2: c"]),
    ],
)
def test_explicit_modes(mode, expected):
    assert split_steps("Step 1: a\nbb\nStep 2: c", StepSplitConfig(mode=mode)) == expected


def test_short_fragments_merge_into_previous_step():
    assert split_steps("Step 1: 2 + 2 = 4\n.\nStep 2: done", StepSplitConfig(mode="lines", min_chars=2)) == [
        "Step 1: 2 + 2 = 4\n.",
        "Step 2: done",
    ]


def test_empty_response_has_no_steps():
    assert split_steps("   \n") == []


# A model-written solution with explicit step headings whose steps hold numbered lists
# and LaTeX: the lists and the equations belong to their step.
HEADED_WITH_LISTS = r"""We need the number of ways to seat the guests.

Step 1: Count the arrangements without restrictions. There are two cases:
1. The host sits at the head: $7! = 5040$ arrangements.
2. The host sits elsewhere: $6 \cdot 7! = 30240$ arrangements.

Step 2: Remove the arrangements where the twins sit together.
1) Treat the twins as one block: $\binom{7}{1} \cdot 6! \cdot 2 = 10080$.
2) Subtract: $35280 - 10080 = 25200$.
3) Check the block count:
   1. blocks of size 2: $7$
   2. orders inside a block: $2$

Step 3: Therefore the answer is $\boxed{25200}$."""


def test_step_headings_are_the_only_markers_when_present():
    steps = split_steps(HEADED_WITH_LISTS)
    assert [step.split("\n")[0] for step in steps] == [
        "We need the number of ways to seat the guests.",
        "Step 1: Count the arrangements without restrictions. There are two cases:",
        "Step 2: Remove the arrangements where the twins sit together.",
        r"Step 3: Therefore the answer is $\boxed{25200}$.",
    ]
    assert "2. The host sits elsewhere: $6 \\cdot 7! = 30240$ arrangements." in steps[1]
    assert steps[2].endswith("2. orders inside a block: $2$")
    assert split_steps(HEADED_WITH_LISTS, StepSplitConfig(mode="numbered")) == steps


def test_steps_keep_the_text_and_drop_only_whitespace():
    for text in (HEADED_WITH_LISTS, "1. a = 1\n\n2. b = 2\nso 3", "x\n\n\ny\n  z  \n"):
        for mode in ("auto", "lines", "paragraphs", "numbered"):
            steps = split_steps(text, StepSplitConfig(mode=mode))
            assert "".join("".join(steps).split()) == "".join(text.split()), mode


def test_one_heading_does_not_turn_list_items_into_steps():
    text = "Step 1: list the cases\n1. a = 1\n2. b = 2\n\nSo a + b = 3."
    assert split_steps(text) == ["Step 1: list the cases\n1. a = 1\n2. b = 2", "So a + b = 3."]
