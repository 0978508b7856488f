"""Verifier speed benchmark (targets on 2 cores).

* math_answer_reward, GSM8K-style numeric answers:         >= 1,500 completions/s
* math_answer_reward, LaTeX answers (synthetic):           >= 500 completions/s
* math_answer_reward, the MATH-like mix of 500 answers:    >= 2,000 checks/s (math_mix.py)
* math_answer_reward, full worked solutions, half of them scored against another problem's
  gold (``bench_math_worked``): >= 2,000 checks/s, each half reported cold and warm
* the worst single hostile completion per verifier (``bench_worst_hostile``), in seconds
* code_reward, small programs sandboxed under bubblewrap:  >= 200 test runs/s (io + assert tests)

Completions go through the TRL reward call (``reward(prompts=..., completions=..., answer=...)``)
in GRPO-shaped batches (``--group`` completions per prompt). Every completion is a distinct
string, half right and half wrong, and all parse caches are cleared (and the math-verify worker
processes replaced by fresh ones) before each timing, so the numbers do not come from caching
repeated inputs. GSM8K is read from the shared data folder
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

from measurements.math_mix import math_mix
from tasks.verifiers import build_reward, latex_parse, mv_pool
from tasks.verifiers import math as vmath

TARGETS = {"math_numeric_per_s": 1500, "math_latex_per_s": 500, "math_mix_per_s": 2000, "code_test_runs_per_s": 200}


def _clear_caches() -> None:
    vmath._gold_ok.cache_clear()
    latex_parse.parse_latex.cache_clear()
    pool = mv_pool.get_pool()
    for slot in pool._all:  # fresh worker processes: their math-verify caches start empty
        slot.kill()
    pool.ask_many([["gold", str(k)] for k in range(pool.size)])  # fork them now, outside the timing


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


GSM8K_STYLES = ("<think>\n{body}\nCheck {k}.\n</think>\n<answer>{ans}</answer>",
                "<think>\n{body}\n</think>\nSo the answer is $\\boxed{{{ans}}}$ (try {k}).",
                "{body} [{k}]\n#### {ans}", "<think>{body} ({k})</think><answer>\\${ans}</answer>")
LATEX_STYLES = ("<think>\n{body}\n</think>\n<answer>$\\boxed{{{ans}}}$</answer>",
                "<think>\n{body}\n</think>\nThe answer is $\\boxed{{{ans}}}$.", "<think>{body}</think><answer>{ans}</answer>")


def _bench_answers(cases: list[dict], group: int, styles: tuple[str, ...], label: str):
    """``group`` completions per case (``prompt``, ``body``, ``gold``, ``right``/``wrong`` forms),
    half right, all distinct strings, scored through the TRL call and timed."""
    prompts, completions, golds, expect = [], [], [], []
    for case in cases:
        for k in range(group):
            right = k % 2 == 0
            forms = case["right"] if right else case["wrong"]
            body = f"{case['body']} (attempt {k})"
            completions.append(styles[k % len(styles)].format(body=body, k=k, ans=forms[k // 2 % len(forms)]))
            prompts.append(case["prompt"])
            golds.append(case["gold"])
            expect.append(1.0 if right else 0.0)
    rate, scores = _time_reward(build_reward("math_answer_reward"), prompts, completions, golds, batch=group * 8)
    bad = [(c, g) for c, g, s, e in zip(completions, golds, scores, expect) if s != e]
    assert not bad, f"math {label} benchmark: wrong scores, e.g. {bad[:3]}"
    return rate, len(completions)


def bench_math_numeric(n: int, group: int, data: Path, rng: random.Random):
    cases = []
    for r in gsm8k_rows(data, max(1, n // group), rng):
        body, gold = r["answer"].rsplit("####", 1)
        value = int(vmath.parse_number(gold.strip())[0])
        cases.append({"prompt": r["question"], "body": body.strip(), "gold": gold.strip(), "right": [gold.strip()],
                      "wrong": [str(value + rng.randint(1, 50)) for _ in range(group)]})
    return _bench_answers(cases, group, GSM8K_STYLES, "numeric")


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
    cases = [{"prompt": f"problem {i}", "body": f"Problem {i}: simplify step by step.", "gold": gold, "right": rights,
              "wrong": [wrong]} for i, (gold, rights, wrong) in enumerate(_latex_case(rng) for _ in range(max(1, n // group)))]
    return _bench_answers(cases, group, LATEX_STYLES, "latex")


def bench_math_mix(group: int):
    """The MATH-like mix: every one of its 500 golds, ``group`` completions each (half right)."""
    cases = [{"prompt": f"problem {i}", "body": f"Problem {i}: work it out.", "gold": it["gold"], "right": it["right"],
              "wrong": it["wrong"]} for i, it in enumerate(math_mix())]
    return _bench_answers(cases, group, LATEX_STYLES, "MATH-like mix")


WORKED = ("We are asked for the value requested in problem {i}. Let $s$ be the quantity we want. Writing the "
          "condition out, $s^2 - {a}s + {b} = 0$, so $(s - {c})(s - {d}) = 0$ and the two candidates are $s = {c}$ "
          "and $s = {d}$. Only one satisfies the constraint $s > {e}$ from the statement, and substituting back "
          "into $\\frac{{s + {a}}}{{2}}$ checks out. Simplifying the final expression step by step gives the answer "
          "$\\boxed{{{ans}}}$.")


def bench_math_worked(group: int, n_items: int = 500) -> dict:
    """Full worked solutions (a MATH-like reference solution ending in ``\\boxed{}``), ``group`` per
    problem: the right half scored against their own gold, the wrong half against another
    problem's gold (as early in training, when most completions are wrong). Each half timed
    cold (caches cleared, fresh math-verify workers) and warm (the same inputs again)."""
    items = math_mix()[:n_items]
    halves: dict[str, tuple[list, list]] = {"right": ([], []), "wrong": ([], [])}
    for i, it in enumerate(items):
        for k in range(group):
            right = k % 2 == 0
            ans = it["right"][k // 2 % len(it["right"])]
            text = WORKED.format(i=i, a=i % 7 + 5, b=k + 6, c=2, d=3 + k, e=1, ans=ans) + f" (attempt {k})"
            gold = it["gold"] if right else items[(i + 1 + k) % len(items)]["gold"]
            comps, golds = halves["right" if right else "wrong"]
            comps.append(text)
            golds.append(gold)
    out: dict = {}
    for half, (comps, golds) in halves.items():
        reward = build_reward("math_answer_reward")
        prompts = [None] * len(comps)
        out[f"{half}_cold_per_s"], scores = _time_reward(reward, prompts, comps, golds, batch=group * 8)
        t = time.perf_counter()
        for p, c, g in _batches(prompts, comps, golds, group * 8):
            reward(prompts=p, completions=c, answer=g)
        out[f"{half}_warm_per_s"] = len(comps) / (time.perf_counter() - t)
        out[f"{half}_n"] = len(comps)
        out[f"{half}_mean_score"] = sum(s or 0 for s in scores) / len(scores)
        out[f"{half}_worst_single_s"] = _worst_single(reward, comps[::max(1, len(comps) // 200)],
                                                      golds[::max(1, len(comps) // 200)])
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def _worst_single(reward, comps: list, golds: list) -> float:
    """The slowest single-completion reward call over a sample (warm)."""
    worst = 0.0
    for c, g in zip(comps, golds):
        t = time.perf_counter()
        reward(completions=[c], answer=[g])
        worst = max(worst, time.perf_counter() - t)
    return worst


HOSTILE_MATH = {
    "unbalanced_boxes_20000": "<think>x</think>" + "\\boxed{" * 20000 + "14}",
    "math_verify_answers_16": "<think>x</think>" + "".join(f"\\boxed{{({9990 + k}^{{9999}})!}}" for k in range(16)),
    "two_slow_answers": "<think>x</think>\\boxed{(9991^{9999})!} \\boxed{(9992^{9999})!}",
    "prompt_echo_plus_ok": "<think>ok</think>\\boxed{14}",
}


def bench_worst_hostile(workers: int, isolation: str) -> dict:
    """Wall clock of the worst single hostile completion per verifier (each alone in its batch)."""
    out = {}
    math_reward = build_reward("math_answer_reward")
    for name, text in HOSTILE_MATH.items():
        t = time.perf_counter()
        math_reward(completions=[text], answer=["14"])
        out[f"math_{name}_s"] = round(time.perf_counter() - t, 3)
    code = build_reward("code_reward", {"timeout_s": 4.0, "workers": workers, "isolation": isolation})
    loop_tests = [{"type": "io", "input": f"{i}\n", "output": f"{i}\n"} for i in range(10)]
    mess = ("import os\nfor i in range(100000):\n    open('f%d' % i, 'w').close()\n"
            "for i in range(3000):\n    os.mkdir('d')\n    os.chdir('d')\nprint(input())")
    for name, program in (("looping_10_io_tests", "while True:\n    pass"), ("100k_files_3000_deep", mess),
                          ("honest_10_io_tests", "print(input())")):
        t = time.perf_counter()
        code(completions=[f"```python\n{program}\n```"], tests=[loop_tests])
        out[f"code_{name}_s"] = round(time.perf_counter() - t, 3)
    for name, reward, text in (("repetition_100k_chars", build_reward("repetition_penalty_reward"), "wait," * 20000),
                               ("language_100k_chars", build_reward("language_consistency_reward"), "$a b$ " * 16000)):
        t = time.perf_counter()
        reward(completions=[text])
        out[f"{name}_s"] = round(time.perf_counter() - t, 3)
    return out


def bench_math_fallback(n: int, group: int, rng: random.Random):
    """Informational: answers only math-verify (in its worker processes) can judge."""
    prompts, completions, golds = [], [], []
    for i in range(max(1, n // group)):
        a, c = rng.randint(2, 99), rng.randint(2, 99)
        gold, right, wrong = rng.choice([
            (f"{a}+{c}\\sqrt{{-1}}", f"{c}\\sqrt{{-1}}+{a}", f"{a}-{c}\\sqrt{{-1}}"),
            (f"\\log_{{2}} {a}", f"\\log_2 {a}", f"\\log_{{2}} {a + 1}"),
            (f"{a}e^{{2}}", f"{a} e^2", f"{a + 1}e^{{2}}"), (f"\\binom{{{a}}}{{2}}", str(a * (a - 1) // 2), str(a)),
        ])
        for k in range(group):
            completions.append(f"<think>attempt {k} of {i}</think><answer>{right if k % 2 == 0 else wrong}</answer>")
            prompts.append(f"p{i}")
            golds.append(gold)
    reward = build_reward("math_answer_reward")
    rate, _ = _time_reward(reward, prompts, completions, golds, batch=group * 8)
    return rate, len(completions)


PROGRAMS = {
    "io": "```python\nimport sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\n```",
    "assert": "```python\ndef solve(xs):\n    return sorted(xs)[len(xs) // 2]\n```",
    "proxy": "```python\ndef solve(xs):\n    return sorted(xs)[len(xs) // 2]\n```",
}


def _code_tests(kind: str, i: int, per_row: int) -> list[dict]:
    if kind == "io":
        return [{"type": "io", "input": f"{i} {j}\n", "output": f"{i + j}\n"} for j in range(per_row)]
    if kind == "assert":
        return [{"type": "assert", "code": f"assert solve([{i}, {j}, {i + j + 1}]) == {max(i, j)}"} for j in range(per_row)]
    return [{"type": "assert", "entry_point": "solve", "code": (  # HumanEval shape: judged in its own process
        f"def check(candidate):\n    for k in range(3):\n        xs = [{i}, {j}, {i + j + 1} + k]\n"
        "        assert candidate(xs) == sorted(xs)[1]\n")} for j in range(per_row)]


def bench_code(n: int, workers: int, isolation: str, kinds: tuple[str, ...]):
    """Sandboxed test runs per second for rows of ``kinds`` tests (4 tests a row)."""
    completions, tests = [], []
    per_row = 4
    for i in range(max(1, n // per_row)):
        kind = kinds[i % len(kinds)]
        completions.append(f"<think>simple</think>\n{PROGRAMS[kind]}")
        tests.append(_code_tests(kind, i, per_row))
    reward = build_reward("code_reward", {"timeout_s": 4.0, "workers": workers, "isolation": isolation})
    reward(completions=completions[:2], tests=tests[:2])  # start the pool (not timed: one-off)
    t = time.perf_counter()
    scores = reward(completions=completions, tests=tests)
    rate = sum(len(t_) for t_ in tests) / (time.perf_counter() - t)
    assert all(s == 1.0 for s in scores), "code benchmark: failing runs"
    return rate, sum(len(t_) for t_ in tests), reward.stats["isolation"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (CI smoke)")
    ap.add_argument("--group", type=int, default=8, help="completions per prompt (GRPO num_generations)")
    ap.add_argument("--workers", type=int, default=0, help="sandbox workers (0 = auto)")
    ap.add_argument("--isolation", default="bwrap", choices=["bwrap", "unshare", "rlimits"],
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
    rate, n = bench_math_mix(args.group)
    results.update(math_mix_per_s=round(rate), math_mix_n=n)
    rate, n = bench_math_fallback(int(400 * scale), args.group, rng)
    results.update(math_fallback_only_per_s=round(rate), math_fallback_only_n=n)
    rate, n, iso = bench_code(int(1200 * scale), args.workers, args.isolation, ("io", "assert"))
    results.update(code_test_runs_per_s=round(rate), code_test_runs_n=n, code_isolation=iso)
    rate, n, _ = bench_code(int(400 * scale), args.workers, args.isolation, ("proxy",))
    results.update(code_proxy_test_runs_per_s=round(rate), code_proxy_test_runs_n=n)
    results["math_worked"] = bench_math_worked(args.group, 125 if args.quick else 500)
    results["worst_single"] = bench_worst_hostile(args.workers, args.isolation)
    results["loadavg_at_end"] = os.getloadavg()
    ok = all(results[k] >= v for k, v in TARGETS.items())
    for k, v in TARGETS.items():
        print(f"{k:24s} {results[k]:>8}  (target >= {v})  {'OK' if results[k] >= v else 'BELOW TARGET'}")
    print(f"{'math_fallback_only_per_s':24s} {results['math_fallback_only_per_s']:>8}  (informational: "
          "answers only math-verify can judge)")
    print(f"{'code_proxy_test_runs_per_s':24s} {results['code_proxy_test_runs_per_s']:>8}  (informational: "
          "HumanEval-style check(candidate) tests, two sandboxed processes each)")
    print(f"sandbox isolation: {results['code_isolation']}; cpus: {results['cpus']}")
    worked = results["math_worked"]
    for half in ("right", "wrong"):
        print(f"math worked solutions, {half} half ({worked[f'{half}_n']}): cold {worked[f'{half}_cold_per_s']:.0f}/s, "
              f"warm {worked[f'{half}_warm_per_s']:.0f}/s, worst single {worked[f'{half}_worst_single_s']:.3f} s "
              f"(target >= {TARGETS['math_mix_per_s']}/s)")
    for k, v in results["worst_single"].items():
        print(f"worst single completion {k:40s} {v:8.3f} s")
    print(f"load average at the end: {results['loadavg_at_end']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
