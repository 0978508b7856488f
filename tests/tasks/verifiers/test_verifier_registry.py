"""Registry contract: names, build_reward errors, param names, pickling, TRL call shape."""

import pickle

import pytest

from tasks.verifiers import REWARDS, build_reward, completion_text, reward_param_names

REQUIRED = {
    "math_answer_reward", "format_reward", "tag_count_reward", "exact_match_reward", "numeric_match_reward",
    "equation_reward", "code_reward", "language_consistency_reward", "soft_overlong_reward",
    "cosine_length_reward", "repetition_penalty_reward",
}
TRL_EXTRAS = {"trainer_state": object(), "log_extra": lambda *a: None, "log_metric": lambda *a: None}


def test_registry_has_required_names_all_ending_in_reward():
    assert REQUIRED <= set(REWARDS)
    assert all(name.endswith("_reward") for name in REWARDS)


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_entry_is_named_documented_and_picklable(name):
    reward = REWARDS[name]
    assert reward.__name__ == name
    doc = type(reward).__doc__ or ""
    assert "Scoring rule" in doc or "scores" in doc or "1.0" in doc, f"{name} docstring must state its rule"
    clone = pickle.loads(pickle.dumps(reward))
    assert clone.__name__ == name and clone.params == reward.params
    built = build_reward(name, {})
    assert built.__name__ == name
    assert pickle.loads(pickle.dumps(built)).__name__ == name


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_entry_accepts_unknown_kwargs_and_returns_one_value_per_completion(name):
    if name == "code_reward":
        kwargs = {"tests": [None, None]}  # rows without tests: no sandbox needed here
    else:
        kwargs = {"answer": ["14", "14"], "numbers": [[1, 2], [1, 2]], "target": [3, 3]}
    completions = ["<think>\n12+7=19\n19-5=14\n</think>\n<answer>14</answer>",
                   [{"role": "assistant", "content": "<think>x</think><answer>3</answer>"}]]
    out = REWARDS[name](prompts=["p", "p"], completions=completions, completion_ids=[[1, 2], [3]],
                        some_unknown_column=[1, 2], **TRL_EXTRAS, **kwargs)
    assert len(out) == 2
    assert all(v is None or isinstance(v, float) for v in out)


def test_unknown_reward_lists_valid_names():
    with pytest.raises(ValueError) as e:
        build_reward("math_answr_reward")
    msg = str(e.value)
    assert "math_answer_reward" in msg and "format_reward" in msg and "code_reward" in msg


def test_unknown_param_names_closest_valid_one():
    with pytest.raises(ValueError, match="prefilled_think"):
        build_reward("format_reward", {"prefiled_think": True})
    with pytest.raises(ValueError, match="unknown parameter"):
        build_reward("math_answer_reward", {"zzz": 1})


def test_bad_param_values_are_clear_errors():
    with pytest.raises(ValueError, match="prefilled_think"):
        build_reward("format_reward", {"prefilled_think": "yes"})
    with pytest.raises(ValueError, match="timeout_s"):
        build_reward("code_reward", {"timeout_s": -1.0})
    with pytest.raises(ValueError, match="max_penalty"):
        build_reward("repetition_penalty_reward", {"max_penalty": 1.0})
    with pytest.raises(ValueError):
        build_reward("format_reward", ["not", "a", "dict"])


def test_reward_param_names_are_what_build_reward_accepts():
    """What the recipe validator offers is what building the reward takes: each name listed
    is accepted and applied, and a name not listed is refused."""
    for name in REWARDS:
        names = reward_param_names(name)
        assert isinstance(names, set)
        for param in names:
            value = REWARDS[name].params[param]
            assert build_reward(name, {param: value}).params[param] == value, (name, param)
        with pytest.raises(ValueError, match="unknown parameter"):
            build_reward(name, {"not_a_param_of_any_reward": 1})
    assert "prefilled_think" in reward_param_names("format_reward")
    with pytest.raises(ValueError):
        reward_param_names("nope_reward")


def test_built_params_are_applied_and_int_accepted_for_float():
    r = build_reward("soft_overlong_reward", {"max_completion_len": 100, "soft_punish_cache": 10})
    assert r(completions=["x"], completion_ids=[[0] * 95]) == [-0.5]
    c = build_reward("cosine_length_reward", {"max_value_correct": 2})
    assert c.params["max_value_correct"] == 2.0


def test_completion_text_handles_both_shapes():
    assert completion_text("abc") == "abc"
    assert completion_text([{"role": "assistant", "content": "abc"}]) == "abc"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]) == "ab"
    assert completion_text(None) == ""


def test_trl_sees_registry_names_and_sync_callables():
    from trl.trainer.utils import get_callable_name, is_async_callable

    for name, reward in REWARDS.items():
        assert get_callable_name(reward) == name
        assert get_callable_name(build_reward(name)) == name
        assert not is_async_callable(reward)
