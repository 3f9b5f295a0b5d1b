import pytest

from schemas.config import StepSplitConfig
from tasks.steps import split_steps


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


@pytest.mark.parametrize("mode,expected", [
    ("lines", ["Step 1: a", "bb", "Step 2: c"]),
    ("numbered", ["Step 1: a\nbb", "Step 2: c"]),
    ("paragraphs", ["Step 1: a\nbb\nStep 2: c"]),
])
def test_explicit_modes(mode, expected):
    assert split_steps("Step 1: a\nbb\nStep 2: c", StepSplitConfig(mode=mode)) == expected


def test_short_fragments_merge_into_previous_step():
    assert split_steps("Step 1: 2 + 2 = 4\n.\nStep 2: done", StepSplitConfig(mode="lines", min_chars=2)) == [
        "Step 1: 2 + 2 = 4\n.", "Step 2: done"]


def test_empty_response_has_no_steps():
    assert split_steps("   \n") == []
