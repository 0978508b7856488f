import json
import re
import socket

import pytest

from tasks.data.cold_start import format_completion
from tasks.data.curate import curate, read_split
from tasks.data.generation import EndpointError
from tasks.recipe import DataSection, RecipeError, Source
from tasks.recipe_checks import validate_recipe
from tasks.verifiers import score_math_answer


def _rows(tmp_path, n):
    rows = [{"id": f"r{a}", "question": f"Compute {a}+{a + 1}.", "answer": str(2 * a + 1)} for a in range(n)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _teacher(question, n):
    """Solves even `a` on its second try (tagged or \\boxed); never solves odd `a`."""
    a, b = map(int, re.findall(r"\d+", question))
    if a % 2:
        return ["I think it is \\boxed{999}."] * n
    right = f"<think>\n{a}+{b}={a + b}\n</think>\n<answer>{a + b}</answer>" if a % 4 == 0 else \
        f"Adding {a} and {b} gives {a + b}, so the answer is \\boxed{{{a + b}}}."
    return ["<think>\nguess\n</think>\n<answer>0</answer>", right][:n] + [right] * (n - 2)


def test_rejection_sampling_keeps_only_verified_teacher_answers(tmp_path, chat_server):
    url, requests = chat_server(_teacher)
    cfg = DataSection(sources=[Source(kind="jsonl", name=str(_rows(tmp_path, 24)))], eval_size=2, sft_size=6,
                      cold_start={"mode": "rejection_sampling", "teacher": url, "candidates": 3})
    stats = curate(cfg, tmp_path / "out")
    sft = read_split(tmp_path / "out", "sft")
    assert len(sft) == 6 and stats["rows/quarantined"] == 0
    for r in sft:
        assert int(r["id"][1:]) % 2 == 0 and score_math_answer(r["completion"], r["answer"]) == 1.0
        assert r["completion"].startswith("<think>\n")
        assert r["metadata"]["teacher_pass_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert any("\\boxed" in r["completion"] for r in sft)  # free-form answers are put in the template
    # prompts the teacher could not solve are still GRPO prompts; nothing is lost
    grpo_ids = {r["id"] for r in read_split(tmp_path / "out", "grpo")}
    assert any(int(i[1:]) % 2 for i in grpo_ids) and stats["rows/eval"] + 6 + len(grpo_ids) == 24
    assert stats["cold_start/accepted"] == 6 and stats["cold_start/candidates"] == 3 * stats["cold_start/prompts"]
    assert {r["model"] for r in requests} == {"teacher-model"} and {r["n"] for r in requests} == {3}


def test_unreachable_teacher_endpoint_fails_with_what_to_start(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    cfg = DataSection(sources=[Source(kind="jsonl", name=str(_rows(tmp_path, 8)))], eval_size=1, sft_size=2,
                      cold_start={"mode": "rejection_sampling", "teacher": f"http://127.0.0.1:{port}/v1"})
    with pytest.raises(EndpointError, match=f"127.0.0.1:{port}/v1 is unreachable.*vllm serve"):
        curate(cfg, tmp_path / "out")


def test_policy_teacher_needs_a_model_before_compute():
    with pytest.raises(RecipeError, match="cold_start.teacher 'policy'"):
        validate_recipe({"data": {"cold_start": {"mode": "rejection_sampling"}}})


def test_imported_traces_whose_own_answer_is_wrong_are_quarantined(tmp_path):
    rows = [{"id": "good", "question": "Compute 2+2.", "answer": "4", "reasoning": "2+2=4, so \\boxed{4}"},
            {"id": "bad", "question": "Compute 3+3.", "answer": "6", "reasoning": "3+3=7, so \\boxed{7}"},
            {"id": "plain", "question": "Compute 4+4.", "answer": "8", "reasoning": "4+4=8"},
            {"id": "held", "question": "Compute 5+5.", "answer": "10"}]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataSection(sources=[Source(kind="jsonl", name=str(tmp_path / "rows.jsonl"))], eval_size=1, sft_size=5,
                      seed=1)
    stats = curate(cfg, tmp_path / "out")
    assert [r["id"] for r in read_split(tmp_path / "out", "eval")] == ["held"]  # seed 1 holds out this row
    sft = {r["id"]: r["completion"] for r in read_split(tmp_path / "out", "sft")}
    assert sft == {"good": format_completion("2+2=4, so \\boxed{4}", "4"), "plain": format_completion("4+4=8", "8")}
    [bad] = read_split(tmp_path / "out", "quarantine")
    assert bad["id"] == "bad" and bad["reason"] == ("cold-start trace fails the verifier: the trace concludes '7', "
                                                    "the gold answer is '6'")
    assert stats["quarantine/cold-start_trace_fails_the_verifier"] == 1
