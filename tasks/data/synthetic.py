"""Seeded generators of verifiable problems, so the default pipeline needs no hub.

Example row of `arithmetic`:

    {"id": "arith-0-17", "question": "Compute 12+7-5.", "answer": "14",
     "reasoning": "12+7=19\n19-5=14", "family": "math", "source": "synthetic:arithmetic"}

`reasoning` is a correct worked solution, used to build the cold-start SFT set; GRPO and
evaluation only read `question` and `answer`.
"""

from __future__ import annotations

import random

GENERATORS: dict[str, callable] = {}


def _register(fn):
    GENERATORS[fn.__name__] = fn
    return fn


@_register
def arithmetic(n: int, seed: int, min_operands: int = 2, max_operands: int = 3,
               max_value: int = 30, terse_fraction: float = 0.0) -> list[dict]:
    """Chains of + and - on integers in [0, max_value], solved left to right.

    Results may be negative, so the model must learn signs as well as carries.
    `terse_fraction` of the worked solutions skip the intermediate steps and state only the
    answer, as a share of real cold-start traces do; a model trained on them sometimes guesses
    in one shot, and GRPO's job is to learn from the verifier that working step by step pays.
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = rng.randint(min_operands, max_operands)
        nums = [rng.randint(0, max_value) for _ in range(k)]
        ops = [rng.choice("+-") for _ in range(k - 1)]
        expr, total, steps = str(nums[0]), nums[0], []
        for op, x in zip(ops, nums[1:]):
            new = total + x if op == "+" else total - x
            steps.append(f"{total}{op}{x}={new}")
            expr += f"{op}{x}"
            total = new
        rows.append({
            "id": f"arith-{seed}-{i}",
            "question": f"Compute {expr}.",
            "answer": str(total),
            "reasoning": "" if rng.random() < terse_fraction else "\n".join(steps),
            "family": "math",
            "source": "synthetic:arithmetic",
        })
    return rows


def generate(name: str, n: int, seed: int, **params) -> list[dict]:
    """Rows from the generator called `name`; unknown names list the valid ones."""
    if name not in GENERATORS:
        raise ValueError(f"unknown synthetic generator {name!r}; valid: {sorted(GENERATORS)}")
    return GENERATORS[name](n=n, seed=seed, **params)
