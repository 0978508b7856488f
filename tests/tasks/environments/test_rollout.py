"""The evaluation's multi-turn loop (TRL's tool loop outside the trainer): replies are parsed,
calls run in the rollout's environment, results go back to the model as tool turns, and the
token budget covers every turn. The policy here is scripted (a real tokenizer, a stand-in for
`generate`), so each branch of the loop is reached on purpose."""

import json

import pytest
import torch

from tasks.data.synthetic import generate
from tasks.environments import ENVIRONMENTS, environment_factory
from tasks.environments.chat import enable_tool_calls
from tasks.environments.rollout import corpus_text, run_episodes
from tasks.eval.multi_turn import environment_metrics
from tasks.modeling import train_tokenizer
from tasks.verifiers import build_reward
from tasks.verifiers.rows import reward_columns, row_fields

ROW = {"id": "r1", "family": "shop", "question": "Shop 1: cost of 3 fig?", "answer": "12",
       "metadata": {"catalog": {"fig": {"price": 4, "stock": 7}}, "ask": {"kind": "cost", "items": {"fig": 3}}}}


@pytest.fixture(scope="module")
def tok():
    rows = generate("shop", 20, seed=0)
    texts = [r["question"] + "\n" + corpus_text(row_fields(r), ENVIRONMENTS["shop"]()) for r in rows]
    return enable_tool_calls(train_tokenizer(texts + ["<think>\n3*4=12\n</think>\n<answer>12</answer>"], 300))


class ScriptedPolicy:
    """Answers each generate() call with the next scripted reply (then EOS), whatever the input."""

    device = torch.device("cpu")

    def __init__(self, tok, replies):
        self.tok, self.replies, self.inputs = tok, list(replies), []

    def generate(self, input_ids, attention_mask, max_new_tokens, **_):
        self.inputs.append(input_ids)
        rows = []
        for _ in range(input_ids.size(0)):
            ids = self.tok(self.replies.pop(0), add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
            rows.append((ids + [self.tok.pad_token_id] * max_new_tokens)[:max_new_tokens])
        return torch.cat([input_ids, torch.tensor(rows)], dim=1)


def _rollout(tok, replies, max_new_tokens=200):
    env = environment_factory("shop")()
    env.reset(**row_fields(ROW))
    policy = ScriptedPolicy(tok, replies)
    (episode,) = run_episodes(policy, tok, [[{"role": "user", "content": ROW["question"]}]], [env],
                              max_new_tokens=max_new_tokens, temperature=1.0, max_turns=3)
    return episode, env, policy


def test_a_call_its_result_and_the_answer_make_one_rollout(tok):
    call = '<tool_call>{"name": "price", "arguments": {"item": "fig"}}</tool_call>'
    episode, env, policy = _rollout(tok, [call, "<think>\n3*4=12\n</think>\n<answer>12</answer>"])
    assert [m["role"] for m in episode.messages] == ["assistant", "tool", "assistant"]
    assert episode.messages[1]["content"] == "4" and env.calls[0]["result"] == "4"
    second_prompt = tok.decode(policy.inputs[1][0])  # the tool turn, in the template's own tokens
    assert second_prompt.endswith("</tool_call><|im_end|>\n<|im_start|>tool\n4<|im_end|>\n<|im_start|>assistant\n")
    reward = build_reward("tool_answer_reward")
    assert reward(completions=[episode.messages], environments=[env], **reward_columns([ROW])) == [1.0]
    samples = [{"doc_id": "r1", "family": "shop", "pass_at_1": 1.0, "tool_calls": env.calls, "tool_errors": 0},
               {"doc_id": "r1", "family": "shop", "pass_at_1": 0.0, "tool_calls": [], "tool_errors": 0}]
    metrics = environment_metrics(samples, "heldout")
    assert metrics["heldout/called_rate"] == 0.5 and metrics["heldout/tool_calls_mean"] == 0.5
    assert metrics["heldout/with_call/pass_at_1"] == 1.0 and metrics["heldout/without_call/pass_at_1"] == 0.0


def test_a_broken_call_gets_an_error_back_and_the_model_goes_on(tok):
    bad = '<tool_call>{"name": "price", "arguments": {"item": fig}</tool_call>'
    episode, env, _ = _rollout(tok, [bad, "<answer>12</answer>"])
    assert "not a JSON object" in episode.messages[1]["content"] and env.calls[0]["error"]
    assert episode.messages[-1]["content"] == "<answer>12</answer>"


def test_the_token_budget_covers_every_turn_and_the_rounds_are_capped(tok):
    call = '<tool_call>{"name": "price", "arguments": {"item": "fig"}}</tool_call>'
    episode, env, _ = _rollout(tok, [call] * 10, max_new_tokens=2000)
    assert len(env.calls) == 3 and json.loads(json.dumps(episode.messages))  # max_turns=3 rounds of calls
    episode, _, _ = _rollout(tok, [call] * 10, max_new_tokens=40)
    assert len(episode.completion_ids) <= 40
