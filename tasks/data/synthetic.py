"""Seeded generators of verifiable problems, so the default pipeline needs no hub.

Example row of `arithmetic`:

    {"id": "arith-0-17", "question": "Compute 12+7-5.", "answer": "14",
     "reasoning": "12+7=19\n19-5=14", "family": "math", "source": "synthetic:arithmetic"}

`countdown` rows (TinyZero's task) carry `metadata: {numbers, target}` for equation_reward;
`code` rows carry `metadata: {tests}` (assert and stdin/stdout tests) for code_reward; their
`answer` is a reference solution (an equation, a fenced Python block). `sql` rows (tasks.data.sql)
carry their own small database as SQL text (`metadata.db_sql`) and a gold query as `answer`.

`reasoning` is a correct worked solution, used to build the cold-start SFT set; the rewards
read the row's columns and metadata (tasks.verifiers.rows).
"""

from __future__ import annotations

import random

from tasks.data.sql import generate_sql_rows

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


@_register
def countdown(n: int, seed: int, count: int = 3, max_value: int = 9, ops: str = "+-*") -> list[dict]:
    """TinyZero's Countdown: reach `target` with each of `numbers` used once (+ - * here).

    Questions stay under 8 words ("Make 16 from 3 5 2."), so held-out rows of the same template
    are not flagged by the default 8-gram decontamination. The target comes from a random
    left-to-right chain over a shuffle of the numbers (kept when it is positive), so every row
    has a solution; the reasoning is that chain's steps and the
    answer its parenthesised expression, e.g. numbers [3, 5, 2], target 16: "(3+5)*2".
    Each number is used once; the operators are `ops`.
    """
    rng = random.Random(seed)
    rows: list[dict] = []
    while len(rows) < n:
        nums = [rng.randint(1, max_value) for _ in range(count)]
        order = rng.sample(nums, len(nums))
        expr, total, steps = str(order[0]), order[0], []
        for x in order[1:]:
            op = rng.choice(ops)
            new = total + x if op == "+" else total - x if op == "-" else total * x
            steps.append(f"{total}{op}{x}={new}")
            expr = f"({expr}){op}{x}" if steps[1:] else f"{expr}{op}{x}"
            total = new
        if total <= 0:
            continue
        rows.append({
            "id": f"countdown-{seed}-{len(rows)}",
            "question": f"Make {total} from {' '.join(map(str, nums))}.",
            "answer": expr, "reasoning": "\n".join(steps), "family": "countdown",
            "source": "synthetic:countdown", "metadata": {"numbers": nums, "target": total},
        })
    return rows


#: code tasks: (statement, body of f(x), python function of x); each statement names its
#: constant once, so a solution copies it from the prompt
_CODE_TASKS = [
    ("x plus {k}", "x + {k}", lambda x, k: x + k),
    ("x minus {k}", "x - {k}", lambda x, k: x - k),
    ("{k} minus x", "{k} - x", lambda x, k: k - x),
    ("x times {k}", "x * {k}", lambda x, k: x * k),
    ("x times {k} plus 1", "x * {k} + 1", lambda x, k: x * k + 1),
    ("twice x plus {k}", "2 * x + {k}", lambda x, k: 2 * x + k),
    ("x plus {k}, doubled", "(x + {k}) * 2", lambda x, k: (x + k) * 2),
    ("x squared plus {k}", "x * x + {k}", lambda x, k: x * x + k),
    ("x modulo {k}", "x % {k}", lambda x, k: x % k),
    ("x floor-divided by {k}", "x // {k}", lambda x, k: x // k),
    ("max of x and {k}", "max(x, {k})", lambda x, k: max(x, k)),
    ("min of x and {k}", "min(x, {k})", lambda x, k: min(x, k)),
    ("distance between x and {k}", "abs(x - {k})", lambda x, k: abs(x - k)),
    ("whether x exceeds {k}", "x > {k}", lambda x, k: x > k),
    ("whether x is below {k}", "x < {k}", lambda x, k: x < k),
]


@_register
def code(n: int, seed: int, max_value: int = 9, io_fraction: float = 0.3, tests: int = 3) -> list[dict]:
    """Small Python tasks: "Write f(x) returning x plus 3." with assert tests, or (share
    `io_fraction`) "Read x; print x plus 3." programs with stdin/stdout tests; the constant is
    in [1, max_value], the tests' x in [0, max_value]. Questions have at most 8 words, so only
    an identical question (an exact duplicate) shares a held-out 8-gram. The tests' expected
    values are never all equal, so no constant program passes them all.

    The answer is a fenced reference solution; the reasoning restates the rule as the Python
    expression the code returns (`x + 3`), constant included, which the code then repeats.
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        while True:  # a task whose tests all expect one value is drawn again
            text, body, fn = rng.choice(_CODE_TASKS)
            k = rng.randint(1, max_value)
            xs = rng.sample(range(max_value + 1), tests)
            if tests < 2 or len({fn(x, k) for x in xs}) > 1:
                break
        expr = body.format(k=k)
        if rng.random() < io_fraction:
            question = f"Read x; print {text.format(k=k)}."
            solution = f"x = int(input())\nprint({expr})"
            cases = [{"type": "io", "input": f"{x}\n", "output": f"{fn(x, k)}\n"} for x in xs]
        else:
            question = f"Write f(x) returning {text.format(k=k)}."
            solution = f"def f(x):\n    return {expr}"
            cases = [{"type": "assert", "code": f"assert f({x}) == {fn(x, k)}"} for x in xs]
        rows.append({
            "id": f"code-{seed}-{i}", "question": question, "answer": f"```python\n{solution}\n```",
            "reasoning": expr, "family": "code", "source": "synthetic:code",
            "metadata": {"tests": cases},
        })
    return rows


_SHOP_ITEMS = ("fig", "kiwi", "lime", "plum", "pear", "nut", "egg", "tea", "jam", "oat", "rice", "corn")


@_register
def shop(n: int, seed: int, items: int = 4, max_price: int = 9, max_qty: int = 5,
         two_item_fraction: float = 0.3, left_fraction: float = 0.3, no_call_fraction: float = 0.0) -> list[dict]:
    """Questions about a shop's generated table of prices and stock, which only the `shop`
    environment's tools can read (tasks.environments.shop): 'Shop 12: cost of 3 "fig"?'.

    Each row has its own table of `items` goods (price 1..max_price, stock max_qty..max_qty +
    max_price, so a sale never empties it) in
    `metadata.catalog` and its question in `metadata.ask`; `two_item_fraction` of the questions
    cost two items (two lookups), `left_fraction` ask for the stock left after a sale. The
    reasoning is the arithmetic once the values are known; `metadata.calls` the lookups that
    get them (cold-start traces replay them through the environment). `no_call_fraction` of the
    rows have no `calls` and no reasoning, as a share of real cold-start traces answer from memory:
    a model trained on them sometimes guesses, and GRPO's job is to learn that looking up pays.
    """
    from tasks.environments.shop import shop_answer, shop_calls, shop_reasoning

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        names = rng.sample(_SHOP_ITEMS, items)
        catalog = {x: {"price": rng.randint(1, max_price), "stock": rng.randint(max_qty, max_price + max_qty)}
                   for x in names}
        r = rng.random()
        kind, k = ("left", 1) if r < left_fraction else ("cost", 2 if r < left_fraction + two_item_fraction else 1)
        ask = {"kind": kind, "items": {x: rng.randint(1, max_qty) for x in rng.sample(names, k)}}
        # Items are quoted as the call's JSON quotes them: `"fig"` is then one token in both
        # places, so the model copies it (unquoted, ` fig` and `"fig"` are different tokens and
        # the SFT model miscopied item names: 4% held-out after 200 steps).
        words = " and ".join(f'{q} "{x}"' for x, q in ask["items"].items())
        ((item, qty),) = ask["items"].items() if kind == "left" else ((None, None),)
        guess = rng.random() < no_call_fraction
        question = f"Shop {rng.randint(1, 999)}: " + (f'"{item}" stock after selling {qty}?' if kind == "left"
                                                        else f"cost of {words}?")
        rows.append({
            "id": f"shop-{seed}-{i}", "question": question, "answer": str(shop_answer(catalog, ask)),
            "reasoning": "" if guess else shop_reasoning(catalog, ask), "family": "shop",
            "source": "synthetic:shop",
            # a guess row has no `calls` at all: an empty list beside JSON-encoded lists of calls
            # cannot share one Arrow column (tasks.verifiers.rows encodes only lists of dicts)
            "metadata": {"catalog": catalog, "ask": ask, **({} if guess else {"calls": shop_calls(ask)})},
        })
    return rows


@_register
def sql(n: int, seed: int, max_tables: int = 3, max_rows: int = 8) -> list[dict]:
    """Text-to-SQL on random databases (one to `max_tables` tables with keys); prompt = CREATE
    statements + a templated question, answer = the gold query (tasks.data.sql.generate_sql_rows)."""
    return generate_sql_rows(n, seed, max_tables=max_tables, max_rows=max_rows)


def generate(name: str, n: int, seed: int, **params) -> list[dict]:
    """Rows from the generator called `name`; unknown names list the valid ones."""
    if name not in GENERATORS:
        raise ValueError(f"unknown synthetic generator {name!r}; valid: {sorted(GENERATORS)}")
    return GENERATORS[name](n=n, seed=seed, **params)
