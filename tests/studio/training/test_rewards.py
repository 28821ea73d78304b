"""GRPO's rule-based rewards on the edge cases people's answers have: no number, full-width digits, Chinese
numerals, extra whitespace, tags; and a user reward file that raises is reported with its traceback."""

from __future__ import annotations

import pytest

from studio.config import RewardsConfig
from studio.errors import StudioError
from studio.training.rewards import (
    RewardFileError,
    accuracy,
    build_rewards,
    numbers,
    repetition,
    reward_file,
    score,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("答案是３７。", [37.0]),  # full-width digits
        ("三十七", [37.0]),
        ("一百零五个，负二度", [105.0, -2.0]),
        ("二〇二六年", [2026.0]),
        ("1,234 apples and -2.5", [1234.0, -2.5]),
        ("half is 1/2", [0.5]),
        ("no number here", []),
        ("", []),
    ],
)
def test_numbers_are_read_in_any_width_and_in_chinese(text, expected):
    assert numbers(text) == pytest.approx(expected)


def test_last_number_match_reads_the_answer_tag_and_ignores_the_working():
    last = accuracy("last_number")
    assert last("", "<think>3 + 4 = 7, no: 12</think><answer> 12 </answer>", "12") == 1.0
    assert last("", "<think>12</think><answer>13</answer>", "<answer>12</answer>") == 0.0
    assert last("", "结果是 １２", "12") == 1.0
    assert last("", "I do not know", "12") == 0.0  # no number: no reward, no error
    assert last("", "12", "no number in the reference") == 0.0


def test_numeric_match_wants_exactly_one_number():
    numeric = accuracy("numeric")
    assert numeric("", "  7.0  ", "7") == 1.0
    assert numeric("", "3 + 4 = 7", "7") == 0.0  # three numbers: not an answer of one number


def test_exact_match_folds_case_width_whitespace_and_punctuation():
    exact = accuracy("exact")
    assert exact("", "  北京。 ", "北京") == 1.0
    assert exact("", "Ｐａｒｉｓ!", "paris") == 1.0
    assert exact("", "Paris, France", "Paris") == 0.0


def test_rule_rewards_and_their_weighted_sum():
    config = RewardsConfig(
        accuracy=1.0,
        format=0.5,
        length=0.25,
        length_min=5,
        length_max=60,
        contains=1.0,
        contains_text="喵",
        ends=1.0,
        ends_text="🐾",
    )
    rewards = build_rewards(config)
    assert [r.name for r in rewards] == list(config.weights()) == ["accuracy", "format", "length", "contains", "ends"]
    total, values = score(rewards, "", "<think>2+2</think>\n<answer>4</answer>", "4")
    assert values == {"accuracy": 1.0, "format": 1.0, "length": 1.0, "contains": 0.0, "ends": 0.0}
    assert total == pytest.approx(1.75)
    total, values = score(rewards, "", "喵～ 4 🐾", "4")
    assert values["format"] == 0.0 and values["contains"] == 1.0 and values["ends"] == 1.0


def test_repetition_is_minus_the_share_of_repeated_trigrams():
    assert repetition("", "abcdef", "") == 0.0
    assert repetition("", "abcabcabcabc", "") == pytest.approx(-(1 - 3 / 10))
    assert repetition("", "ab", "") == 0.0


def test_no_reward_function_is_refused():
    with pytest.raises(StudioError, match="weight above 0"):
        build_rewards(RewardsConfig(accuracy=0.0))


def test_a_reward_file_that_raises_is_reported_with_its_traceback(tmp_path):
    path = tmp_path / "my_reward.py"
    path.write_text("def reward(prompt, answer, reference):\n    return 1 / len(answer)\n", encoding="utf-8")
    function = reward_file(str(path))
    assert function("", "ab", "") == 0.5
    with pytest.raises(RewardFileError) as raised:
        function("", "", "")
    text = str(raised.value)
    assert "my_reward.py" in text and "ZeroDivisionError" in text and "line 2" in text


def test_a_reward_file_without_a_function_or_missing_is_refused_by_name(tmp_path):
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n", encoding="utf-8")
    with pytest.raises(RewardFileError, match="defines no reward"):
        reward_file(str(empty))
    with pytest.raises(RewardFileError, match="does not exist"):
        reward_file(str(tmp_path / "missing.py"))
    broken = tmp_path / "broken.py"
    broken.write_text("def reward(:\n", encoding="utf-8")
    with pytest.raises(RewardFileError, match="SyntaxError"):
        reward_file(str(broken))
