"""Verifier speed benchmark (issue 3 targets on 2 cores).

* math_answer_reward, GSM8K-style numeric answers: >= 1,500 completions/s
* math_answer_reward, LaTeX answers (MATH-style):  >= 500 completions/s
* code_reward, small programs in the sandbox:      >= 100 sandboxed test runs/s

Completions go through the TRL reward call (``reward(prompts=..., completions=..., answer=...)``)
in GRPO-shaped batches (``--group`` completions per prompt). Every completion is a distinct
string, half right and half wrong, and all parse caches are cleared before each timing, so the
numbers do not come from caching repeated inputs. GSM8K is read from the shared data folder
(``--gsm8k``); synthetic GSM8K-like rows are used when it is absent.

    python measurements/verifier_speed.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.verifiers import build_reward, latex_fast
from tasks.verifiers import math as vmath

TARGETS = {"math_numeric_per_s": 1500, "math_latex_per_s": 500, "code_test_runs_per_s": 100}


def _clear_caches() -> None:
    vmath._parse_gold.cache_clear()
    vmath._parse_pred.cache_clear()
    latex_fast.parse_latex.cache_clear()


def _batches(prompts, completions, golds, batch):
    for i in range(0, len(completions), batch):
        yield prompts[i:i + batch], completions[i:i + batch], golds[i:i + batch]


def _time_reward(reward, prompts, completions, golds, batch, **extra):
    _clear_caches()
    t = time.perf_counter()
    scores = []
    for p, c, g in _batches(prompts, completions, golds, batch):
        scores += reward(prompts=p, completions=c, answer=g, **extra)
    return len(completions) / (time.perf_counter() - t), scores


def gsm8k_rows(path: Path, limit: int, rng: random.Random):
    rows = []
    for split in ("test", "train"):
        f = path / f"{split}.jsonl"
        if f.exists():
            rows += [json.loads(line) for line in f.open()]
    if not rows:
        rows = [{"question": f"q{i}", "answer": f"{i}+{i}=<<{i}+{i}={2 * i}>>{2 * i}\n#### {2 * i:,}"} for i in range(5000)]
    rng.shuffle(rows)
    return rows[:limit]


def bench_math_numeric(n: int, group: int, data: Path, rng: random.Random):
    rows = gsm8k_rows(data, max(1, n // group), rng)
    prompts, completions, golds, expect = [], [], [], []
    for r in rows:
        body, gold = r["answer"].rsplit("####", 1)
        gold = gold.strip()
        for k in range(group):
            right = k % 2 == 0
            ans = gold if right else str(int(vmath.parse_number(gold)[0]) + rng.randint(1, 50))
            style = k % 4
            if style == 0:
                text = f"<think>\n{body.strip()}\nCheck {k}.\n</think>\n<answer>{ans}</answer>"
            elif style == 1:
                text = f"<think>\n{body.strip()}\n</think>\nSo the answer is $\\boxed{{{ans}}}$ (try {k})."
            elif style == 2:
                text = f"{body.strip()} [{k}]\n#### {ans}"
            else:
                text = f"<think>{body.strip()} ({k})</think><answer>\\${ans}</answer>"
            prompts.append(r["question"])
            completions.append(text)
            golds.append(gold)
            expect.append(1.0 if right else 0.0)
    reward = build_reward("math_answer_reward")
    rate, scores = _time_reward(reward, prompts, completions, golds, batch=group * 8)
    assert scores == expect, "math numeric benchmark: wrong scores"
    return rate, len(completions)


def _latex_case(rng: random.Random):
    a, b = rng.randint(2, 40), rng.choice([2, 3, 5, 6, 7, 10, 11, 13])
    c = rng.choice([x for x in range(2, 20) if x != a])
    kind = rng.randrange(8)
    if kind == 0:
        return f"{a}\\sqrt{{{b}}}", [f"\\sqrt{{{b}}}\\cdot {a}", f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}"], f"{a + 1}\\sqrt{{{b}}}"
    if kind == 1:
        return f"\\frac{{{a}\\pi}}{{{c}}}", [f"\\frac{{{a}}}{{{c}}}\\pi", f"\\dfrac{{{a}\\pi}}{{{c}}}"], f"\\frac{{{a}\\pi}}{{{c + 1}}}"
    if kind == 2:
        return f"({a}, {c})", [f"\\left({a},{c}\\right)", f"({a},{c})"], f"({c}, {a})"
    if kind == 3:
        return f"x^2+{a}x+{c}", [f"{c}+{a}x+x^{{2}}", f"x^{{2}} + {a} x + {c}"], f"x^2+{a}x-{c}"
    if kind == 4:
        return f"[{a}, {a + c})", [f"[{a},{a + c})", f"\\left[{a}, {a + c}\\right)"], f"[{a}, {a + c}]"
    if kind == 5:
        return f"\\frac{{\\sqrt{{{b}}}}}{{{c}}}", [f"\\dfrac{{\\sqrt{{{b}}}}}{{{c}}}", f"\\frac{{1}}{{{c}}}\\sqrt{{{b}}}"], f"\\frac{{\\sqrt{{{b}}}}}{{{c + 1}}}"
    if kind == 6:
        return f"\\{{{a}, {c}, {a + c}\\}}", [f"\\{{{a + c}, {a}, {c}\\}}", f"\\{{{c},{a},{a + c}\\}}"], f"\\{{{a}, {c}\\}}"
    return f"\\frac{{{a}}}{{{a + c}}}", [f"\\dfrac{{{a}}}{{{a + c}}}", f"\\tfrac{{{a * 2}}}{{{2 * (a + c)}}}"], f"\\frac{{{a + c}}}{{{a}}}"


def bench_math_latex(n: int, group: int, rng: random.Random):
    prompts, completions, golds, expect = [], [], [], []
    for i in range(max(1, n // group)):
        gold, rights, wrong = _latex_case(rng)
        for k in range(group):
            right = k % 2 == 0
            ans = rights[k // 2 % len(rights)] if right else wrong
            text = f"<think>\nProblem {i}, attempt {k}: simplify step by step.\n</think>\n<answer>$\\boxed{{{ans}}}$</answer>"
            prompts.append(f"problem {i}")
            completions.append(text)
            golds.append(gold)
            expect.append(1.0 if right else 0.0)
    reward = build_reward("math_answer_reward")
    rate, scores = _time_reward(reward, prompts, completions, golds, batch=group * 8)
    bad = [(c, g) for c, g, s, e in zip(completions, golds, scores, expect) if s != e]
    assert not bad, f"math latex benchmark: wrong scores, e.g. {bad[:3]}"
    return rate, len(completions)


def bench_math_fallback(n: int, group: int, rng: random.Random):
    """Informational: answers only math-verify can judge (percent, equations, units, complex)."""
    prompts, completions, golds = [], [], []
    for i in range(max(1, n // group)):
        a, c = rng.randint(2, 99), rng.randint(2, 99)
        gold, right, wrong = rng.choice([
            (f"{a}\\%", f"{a}\\%", f"{a + 1}\\%"), (f"x = {a}", f"x={a}", f"x = {c + a}"),
            (f"{a}\\text{{ cm}}", f"{a} \\text{{cm}}", f"{a + c}\\text{{ cm}}"), (f"{a}+{c}i", f"{c}i+{a}", f"{a}-{c}i"),
        ])
        for k in range(group):
            completions.append(f"<think>attempt {k} of {i}</think><answer>{right if k % 2 == 0 else wrong}</answer>")
            prompts.append(f"p{i}")
            golds.append(gold)
    reward = build_reward("math_answer_reward")
    rate, _ = _time_reward(reward, prompts, completions, golds, batch=group * 8)
    return rate, len(completions)


def bench_code(n: int, workers: int, isolation: str = "auto"):
    programs = [
        ("```python\nimport sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\n```", "io"),
        ("```python\ndef solve(xs):\n    return sorted(xs)[len(xs) // 2]\n```", "assert"),
    ]
    completions, tests = [], []
    per_row = 4
    for i in range(max(1, n // per_row)):
        code, kind = programs[i % 2]
        if kind == "io":
            rows = [{"type": "io", "input": f"{i} {j}\n", "output": f"{i + j}\n"} for j in range(per_row)]
        else:
            rows = [{"type": "assert", "code": f"assert solve([{i}, {j}, {i + j + 1}]) == {max(i, j)}"} for j in range(per_row)]
        completions.append(f"<think>simple</think>\n{code}")
        tests.append(rows)
    reward = build_reward("code_reward", {"timeout_s": 4.0, "workers": workers, "isolation": isolation})
    reward(completions=completions[:2], tests=tests[:2])  # start the pool (not timed: one-off)
    t = time.perf_counter()
    scores = reward(completions=completions, tests=tests)
    rate = sum(len(t_) for t_ in tests) / (time.perf_counter() - t)
    assert all(s is not None and s > 0 for s in scores), "code benchmark: failing runs"
    return rate, sum(len(t_) for t_ in tests), reward.stats["isolation"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (CI smoke)")
    ap.add_argument("--group", type=int, default=8, help="completions per prompt (GRPO num_generations)")
    ap.add_argument("--workers", type=int, default=0, help="sandbox workers (0 = auto)")
    ap.add_argument("--isolation", default="auto", choices=["auto", "bwrap", "unshare", "rlimits"],
                    help="sandbox isolation level for the code benchmark")
    ap.add_argument("--gsm8k", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rng = random.Random(0)
    scale = 0.25 if args.quick else 1.0
    results = {"cpus": len(os.sched_getaffinity(0)), "group": args.group}
    rate, n = bench_math_numeric(int(8000 * scale), args.group, args.gsm8k, rng)
    results.update(math_numeric_per_s=round(rate), math_numeric_n=n)
    rate, n = bench_math_latex(int(4000 * scale), args.group, rng)
    results.update(math_latex_per_s=round(rate), math_latex_n=n)
    rate, n = bench_math_fallback(int(400 * scale), args.group, rng)
    results.update(math_fallback_only_per_s=round(rate), math_fallback_only_n=n)
    rate, n, iso = bench_code(int(1200 * scale), args.workers, args.isolation)
    results.update(code_test_runs_per_s=round(rate), code_test_runs_n=n, code_isolation=iso)
    ok = all(results[k] >= v for k, v in TARGETS.items())
    for k, v in TARGETS.items():
        print(f"{k:24s} {results[k]:>8}  (target >= {v})  {'OK' if results[k] >= v else 'BELOW TARGET'}")
    print(f"{'math_fallback_only_per_s':24s} {results['math_fallback_only_per_s']:>8}  (informational: "
          "answers only math-verify can judge)")
    print(f"sandbox isolation: {results['code_isolation']}; cpus: {results['cpus']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
