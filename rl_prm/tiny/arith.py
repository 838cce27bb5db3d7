"""Multi-step arithmetic word problems with step-by-step gold solutions (deterministic).

Each problem is a short story with a chain of operations; the gold solution has one step per
operation ("\\n\\n"-separated) and ends with `\\boxed{answer}`. `corrupt()` injects a realistic
error at a chosen step (arithmetic slip, wrong operation, copied wrong number) and propagates
it, giving first-error labels (mini-ProcessBench). Used to build the tiny judge's critiques.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

NAMES = ["Ava", "Ben", "Cara", "Dan", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jade", "Kai", "Lena"]
ITEMS = ["apples", "marbles", "stickers", "coins", "books", "pencils", "cards", "shells"]
_OPS = {
    "add": ("buys {n} more", "+"),
    "sub": ("gives away {n}", "-"),
    "mul": ("ends up with {n} times as many", "*"),
}


@dataclass
class Step:
    text: str
    before: int
    op: str
    operand: int
    after: int
    correct: bool = True


@dataclass
class Problem:
    question: str
    steps: list[Step]
    answer: int
    label: int = -1  # index of the first wrong step, -1 when all correct
    meta: dict = field(default_factory=dict)

    @property
    def step_texts(self) -> list[str]:
        return [s.text for s in self.steps]

    @property
    def solution(self) -> str:
        return "\n\n".join(self.step_texts)


def _apply(op: str, a: int, b: int) -> int:
    return a + b if op == "add" else a - b if op == "sub" else a * b


def _step_text(name: str, item: str, op: str, a: int, b: int, result: int) -> str:
    sym = _OPS[op][1]
    verb = {"add": "buys", "sub": "gives away", "mul": "multiplies the pile by"}[op]
    return f"{name} {verb} {b}, so {name} has {a} {sym} {b} = {result} {item}."


def make_problem(rng: random.Random, n_ops: int | None = None, *, ops_range: tuple[int, int] = (2, 4),
                 start_range: tuple[int, int] = (2, 20), max_add: int = 15, max_sub: int = 15,
                 mul_range: tuple[int, int] = (2, 3), mul_below: int = 50, max_value: int | None = None) -> Problem:
    """A random problem: start amount, then n_ops operations (add / sub / mul), gold steps, answer.
    The keyword ranges set the difficulty (defaults: rl_prm.tiny's problems); ``max_value`` caps
    every intermediate amount (an operation that would exceed it is not drawn)."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    n_ops = n_ops or rng.randint(*ops_range)
    start = rng.randint(*start_range)
    cap = max_value if max_value is not None else 10**9
    clauses, steps, cur = [], [], start
    steps.append(Step(f"{name} starts with {start} {item}.", start, "start", start, start))
    for _ in range(n_ops):
        ops = (["add"] if cur + 1 <= cap else []) + (["sub"] if cur > 2 else []) \
            + (["mul"] if cur < mul_below and cur * mul_range[0] <= cap else [])
        op = rng.choice(ops)
        if op == "add":
            b = rng.randint(1, min(max_add, cap - cur))
        elif op == "sub":
            b = rng.randint(1, min(cur - 1, max_sub))
        else:
            b = rng.randint(mul_range[0], max(mul_range[0], min(mul_range[1], cap // cur)))
        nxt = _apply(op, cur, b)
        clauses.append(_OPS[op][0].format(n=b))
        steps.append(Step(_step_text(name, item, op, cur, b, nxt), cur, op, b, nxt))
        cur = nxt
    question = f"{name} has {start} {item}. Then {name} " + ", then ".join(clauses) + f". How many {item} does {name} have now?"
    steps.append(Step(f"The answer is \\boxed{{{cur}}}.", cur, "answer", cur, cur))
    return Problem(question, steps, cur, meta={"name": name, "item": item})


def corrupt(problem: Problem, rng: random.Random, at: int | None = None) -> Problem:
    """Copy of `problem` with an error injected at operation step `at` (1..n_ops) and propagated."""
    name, item = problem.meta["name"], problem.meta["item"]
    op_steps = [i for i, s in enumerate(problem.steps) if s.op in _OPS]
    at = at if at is not None else rng.choice(op_steps)
    steps = [Step(**vars(s)) for s in problem.steps[:at]]
    cur = steps[-1].after
    for i, s in enumerate(problem.steps[at:], start=at):
        if s.op == "answer":
            steps.append(Step(f"The answer is \\boxed{{{cur}}}.", cur, "answer", cur, cur, correct=cur == steps[-1].after))
            break
        b, op = s.operand, s.op
        if i == at:
            kind = rng.choice(["slip", "wrong_op", "wrong_number"])
            if kind == "slip":
                result = _apply(op, cur, b) + rng.choice([-3, -2, -1, 1, 2, 3])
            elif kind == "wrong_op":
                op2 = {"add": "sub", "sub": "add", "mul": "add"}[op]
                result = _apply(op2, cur, b)
            else:
                b = b + rng.choice([1, 2, 3])
                result = _apply(op, cur, b)
            steps.append(Step(_step_text(name, item, op, cur, b, result), cur, op, b, result, correct=False))
        else:
            result = _apply(op, cur, b)
            steps.append(Step(_step_text(name, item, op, cur, b, result), cur, op, b, result))
        cur = result
    return Problem(problem.question, steps, problem.answer, label=at, meta=dict(problem.meta))


def critique(problem: Problem, k: int) -> str:
    """A programmatic teacher's critique of step k in the R-PRM format, ending with the verdict."""
    s = problem.steps[k]
    ok = k < problem.label or problem.label == -1
    prev = "There are no Previous Steps." if k == 0 else f"Steps 1 to {k} are consistent with the question."
    if s.op in _OPS:
        sym = _OPS[s.op][1]
        calc = f"{s.before} {sym} {s.operand} = {_apply(s.op, s.before, s.operand)}."
        now = f"The Now Step computes {s.before} {sym} {s.operand}."
    elif s.op == "answer":
        calc, now = "There is no calculation in the Now Step.", "The Now Step states the final answer."
    else:
        calc, now = "There is no calculation in the Now Step.", "The Now Step states the starting amount."
    verdict = "Yes" if ok else "No"
    conclusion = "The Now Step is correct." if ok else "The Now Step is wrong."
    return (
        "Analysis:\n"
        f"**Previous Steps Analysis**: {prev}\n"
        f"**Now Step Analysis**: {now}\n"
        f"**Data Source Analysis**: The data come from the question and the previous steps.\n"
        f"**Consistency Analysis**: The Now Step follows the previous steps.\n"
        f"**Calculation Analysis**: {calc}\n"
        f"Conclusion: {conclusion}\n"
        f"Verification: Is the step correct (Yes/No)? {verdict}"
    )
