"""The miniature world's task: multi-step arithmetic word problems, realistic errors, mini-ProcessBench.

    from rl_prm.world.tasks import problems, corrupt, processbench, first_wrong_step
    train = problems("train", 2000, seed=0)           # list[Problem] (rl_prm.tiny.arith.Problem)
    bench = processbench("test", 200, seed=0)         # load_processbench-shaped records
    first_wrong_step(p.question, p.step_texts)        # recomputes every step from the text: -1 or index

Problems are short stories with 2-3 numbered operations on one-digit amounts (add, give away,
double), written so a tiny model can solve them: the question names each operation with an
ordinal ("First, Ben buys 6 more.") and the gold solution has one "\\n\\n"-separated step per
operation, starting with the same ordinal ("First, Ben buys 6, so Ben has 38 + 6 = 44 coins."), then
``The answer is \\boxed{44}.``. The split of a problem is a pure function of its question text (a hash), so train and test
never share a question whatever the sizes or seeds. ``corrupt`` injects one of four errors at a known
operation step and propagates it:

    slip          right operation, result off by 1-3
    wrong_op      the step writes the question's operation but computes another (+ for -, + for *)
    wrong_number  the step copies a wrong operand (off by 1-3) and computes with it correctly
    dropped       the step for one of the question's operations is left out (a dropped quantity):
                  the step in its place, or the answer step, is the first wrong one

Every corrupted problem is checked against ``first_wrong_step`` (recomputation from the text alone);
a corruption the checker would not flag at the intended step (e.g. 2 * 2 written as 2 + 2) is
re-drawn, so the labels are exact.

``miracle`` writes flawed solutions whose final answer is still RIGHT (what an outcome reward pays
for and a process reward does not), also checked by recomputation (first wrong step and answer):

    misquote   an operation step states a wrong amount ("buys 5" for the question's 6) but computes
               with the right one; nothing downstream changes
    jump       an error of ERROR_KINDS at an operation step, propagated, then the answer step boxes
               the right answer anyway (an unjustified jump)
    cancel     an arithmetic slip, then the next operation step computes wrongly back to the right
               amount (two errors that cancel)
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from rl_prm.eval.processbench import scored_prefix
from rl_prm.tiny.arith import _OPS, Problem, Step, _apply
from rl_prm.tiny.arith import make_problem as arith_problem

ERROR_KINDS = ("slip", "wrong_op", "wrong_number", "dropped")
MIRACLE_KINDS = ("misquote", "jump", "cancel")
# how often each miracle kind is drawn in mini-ProcessBench and the judge's targets (the policy's SFT mix
# has its own weights: rl_prm.world.policy.PolicySFTConfig.miracle_weights)
MIRACLE_WEIGHTS = (0.5, 0.25, 0.25)
SPLITS = ("train", "test")
TEST_FRACTION = 0.2
INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."

ORDINALS = ("First", "Second", "Third", "Fourth")
# difficulty of the world's problems (rl_prm.tiny.arith.make_problem's keywords)
# (one-digit amounts: every number is one token, so a 2-layer model trained for a few CPU minutes
# does the arithmetic; measured: with amounts up to 19 or 29 (two digit tokens) the policy's and the
# judge's own arithmetic slips dominated and the judge's F1 stayed below 20)
PROBLEM_SPEC = dict(ops_range=(2, 3), start_range=(2, 9), max_add=8, max_sub=8, mul_range=(2, 2), mul_below=50,
                    max_value=9)

_SYM = {"+": "add", "-": "sub", "*": "mul"}
_VERB = {"buys": "add", "gives away": "sub", "multiplies the pile by": "mul"}
_VERB_OF = {v: k for k, v in _VERB.items()}
_CLAUSE_TEXT = {"add": "buys {n} more", "sub": "gives away {n}", "mul": "multiplies the pile by {n}"}
_CLAUSE = re.compile(r"(First|Second|Third|Fourth), \w+ (?:buys (\d+) more|gives away (\d+)|multiplies the pile by (\d+))\.")
_START_Q = re.compile(r"^\w+ has (\d+) ")
_START_S = re.compile(r"^\w+ starts with (-?\d+) ")
_OP_S = re.compile(r"^(\w+), \w+ (buys|gives away|multiplies the pile by) (-?\d+), so \w+ has (-?\d+) ([+*-]) (-?\d+) = (-?\d+) ")
_ANSWER_S = re.compile(r"^The answer is \\boxed\{(-?\d+)\}\.$")


def split_of(question: str) -> str:
    """"test" for ~TEST_FRACTION of questions, else "train" (a hash of the text: stable, disjoint)."""
    h = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16)
    return "test" if h % 1000 < TEST_FRACTION * 1000 else "train"


def _step_text(name: str, item: str, i: int, op: str, a: int, b: int, result: int, said: int | None = None) -> str:
    """Operation step i (1-based): "<Ordinal>, <name> <verb> said, so <name> has a <sym> b = result <item>."
    (``said`` = the amount the step states, b unless given)."""
    return (f"{ORDINALS[i - 1]}, {name} {_VERB_OF[op]} {b if said is None else said}, so {name} has {a} {_OPS[op][1]} "
            f"{b} = {result} {item}.")


def make_problem(rng: random.Random) -> Problem:
    """One gold world problem (PROBLEM_SPEC's difficulty)."""
    base = arith_problem(rng, **PROBLEM_SPEC)  # the chain of operations; the text is the world's own
    name, item = base.meta["name"], base.meta["item"]
    ops = [s for s in base.steps if s.op in _OPS]
    clauses = " ".join(f"{ORDINALS[i]}, {name} {_CLAUSE_TEXT[s.op].format(n=s.operand)}." for i, s in enumerate(ops))
    question = f"{name} has {base.steps[0].after} {item}. {clauses} How many {item} does {name} have now?"
    steps = [base.steps[0]] + [Step(_step_text(name, item, i, s.op, s.before, s.operand, s.after), s.before, s.op,
                                    s.operand, s.after) for i, s in enumerate(ops, start=1)] + [base.steps[-1]]
    return Problem(question, steps, base.answer, meta={"name": name, "item": item})


def problems(split: str, n: int, seed: int = 0) -> list[Problem]:
    """n distinct gold problems of ``split`` ("train" | "test"), deterministic in (split, n, seed)."""
    if split not in SPLITS:
        raise ValueError(f"unknown world split {split!r}; expected one of {SPLITS}")
    rng = random.Random(f"world-{split}-{seed}")
    out, seen, tries = [], set(), 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 1000:
            raise RuntimeError(f"could only draw {len(out)} distinct {split} problems of {n} requested")
        p = make_problem(rng)
        if p.question in seen or split_of(p.question) != split:
            continue
        seen.add(p.question)
        out.append(p)
    return out


def question_ops(question: str) -> tuple[int, list[tuple[str, int]]]:
    """(start, [(op, operand), ...]) parsed from a world question."""
    m = _START_Q.match(question)
    if not m:
        raise ValueError(f"not a world question: {question[:80]!r}")
    ops = []
    for ordinal, add, sub, mul in _CLAUSE.findall(question):
        if ordinal != ORDINALS[len(ops)]:
            raise ValueError(f"world question with operations out of order ({ordinal!r}): {question[:80]!r}")
        ops.append(("add", int(add)) if add else ("sub", int(sub)) if sub else ("mul", int(mul)))
    return int(m.group(1)), ops


def first_wrong_step(question: str, steps: list[str]) -> int:
    """Index of the first step that is wrong by recomputation from the question, -1 if none.

    Step 0 must state the start amount; step i (1..n) must name the i-th ordinal and apply the
    question's i-th operation with its operand to the previous step's result and compute it right; the last step must box the
    result of all n operations. A step that does not parse counts as wrong; missing steps (a
    solution that ends early) make the answer step, at the index where it stands, wrong."""
    start, ops = question_ops(question)
    cur = None
    for i, text in enumerate(steps):
        text = text.strip()
        if i == 0:
            m = _START_S.match(text)
            if not m or int(m.group(1)) != start:
                return 0
            cur = start
            continue
        if i <= len(ops):
            m = _OP_S.match(text)
            if not m:
                return i
            ordinal, verb, b, a, sym, b2, c = m.groups()
            op, operand = ops[i - 1]
            if (ordinal != ORDINALS[i - 1] or _VERB[verb] != op or _SYM[sym] != op or int(b) != operand or int(b2) != operand
                    or int(a) != cur or int(c) != _apply(op, cur, operand)):
                return i
            cur = int(c)
            continue
        m = _ANSWER_S.match(text)
        if i != len(ops) + 1 or not m or int(m.group(1)) != cur:
            return i
    if len(steps) != len(ops) + 2:
        return len(steps) - 1 if steps else 0
    return -1


def _corrupt_once(problem: Problem, rng: random.Random, at: int, kind: str) -> Problem:
    name, item = problem.meta["name"], problem.meta["item"]
    steps = [Step(**vars(s)) for s in problem.steps[:at]]
    cur = steps[-1].after
    rest = problem.steps[at:]
    if kind == "dropped":
        rest = rest[1:]
    for i, s in enumerate(rest, start=at):
        if s.op == "answer":
            steps.append(Step(f"The answer is \\boxed{{{cur}}}.", cur, "answer", cur, cur))
            break
        b, op, result = s.operand, s.op, None
        if i == at and kind != "dropped":
            if kind == "slip":
                result = _apply(op, cur, b) + rng.choice([-3, -2, -1, 1, 2, 3])
            elif kind == "wrong_op":
                result = _apply({"add": "sub", "sub": "add", "mul": "add"}[op], cur, b)
            else:  # wrong_number
                b = b + rng.choice([1, 2, 3])
                result = _apply(op, cur, b)
        else:
            result = _apply(op, cur, b)
        steps.append(Step(_step_text(name, item, len(steps), op, cur, b, result), cur, op, b, result))
        cur = result
    for j, st in enumerate(steps):
        st.correct = j < at  # ProcessBench sense: no error at or before this step
    meta = dict(problem.meta, error_kind=kind)
    return Problem(problem.question, steps, problem.answer, label=at, meta=meta)


def corrupt(problem: Problem, rng: random.Random, at: int | None = None, kind: str | None = None) -> Problem:
    """Copy of gold ``problem`` with one error of ``kind`` (random if None) at operation step ``at``
    (random if None, 1..n_ops), propagated; ``label`` = first wrong step (checked by recomputation)."""
    if kind is not None and kind not in ERROR_KINDS:
        raise ValueError(f"unknown error kind {kind!r}; expected one of {ERROR_KINDS}")
    op_steps = [i for i, s in enumerate(problem.steps) if s.op in _OPS]
    if at is not None and at not in op_steps:
        raise ValueError(f"corrupt: step {at} is not an operation step (operation steps: {op_steps})")
    for _ in range(50):
        a = at if at is not None else rng.choice(op_steps)
        k = kind if kind is not None else rng.choice(ERROR_KINDS)
        q = _corrupt_once(problem, rng, a, k)
        if first_wrong_step(q.question, q.step_texts) == a:
            return q
    raise RuntimeError(f"corrupt: no detectable {kind or 'error'} at step {at} of {problem.question!r}")


def _answer_step(value: int) -> Step:
    return Step(f"The answer is \\boxed{{{value}}}.", value, "answer", value, value)


def _miracle_once(problem: Problem, rng: random.Random, at: int, kind: str) -> Problem:
    name, item = problem.meta["name"], problem.meta["item"]
    gold = [Step(**vars(s)) for s in problem.steps]
    if kind == "jump":
        q = corrupt(problem, rng, at=at, kind=rng.choice(ERROR_KINDS))
        steps = [Step(**vars(s)) for s in q.steps[:-1]] + [_answer_step(problem.answer)]
    elif kind == "misquote":
        s = gold[at]
        said = max(1, s.operand + rng.choice([-3, -2, -1, 1, 2, 3]))
        steps = gold[:at] + [Step(_step_text(name, item, at, s.op, s.before, s.operand, s.after, said=said), s.before,
                                  s.op, s.operand, s.after)] + gold[at + 1:]
    else:  # cancel: a slip at `at`, then step at+1 computes from the slipped amount back to the gold amount
        s, t = gold[at], gold[at + 1]
        wrong = s.after + rng.choice([-3, -2, -1, 1, 2, 3])
        steps = gold[:at] + [Step(_step_text(name, item, at, s.op, s.before, s.operand, wrong), s.before, s.op,
                                  s.operand, wrong),
                             Step(_step_text(name, item, at + 1, t.op, wrong, t.operand, t.after), wrong, t.op,
                                  t.operand, t.after)] + gold[at + 2:]
    for j, st in enumerate(steps):
        st.correct = j < at
    return Problem(problem.question, steps, problem.answer, label=at, meta=dict(problem.meta, error_kind=kind))


def miracle(problem: Problem, rng: random.Random, kind: str | None = None, at: int | None = None,
            weights: tuple[float, ...] = MIRACLE_WEIGHTS) -> Problem:
    """Copy of gold ``problem`` with a wrong step but the RIGHT final answer (a MIRACLE_KINDS flaw,
    drawn with ``weights`` if None, at operation step ``at``, random if None); ``label`` = first wrong step, checked
    by recomputation, and the boxed answer is checked to be the gold one."""
    if kind is not None and kind not in MIRACLE_KINDS:
        raise ValueError(f"unknown miracle kind {kind!r}; expected one of {MIRACLE_KINDS}")
    op_steps = [i for i, s in enumerate(problem.steps) if s.op in _OPS]
    for _ in range(50):
        k = kind if kind is not None else rng.choices(MIRACLE_KINDS, weights=weights)[0]
        choices = op_steps[:-1] if k == "cancel" else op_steps  # cancel needs a next operation step
        if at is not None and at not in choices:
            raise ValueError(f"miracle {k}: step {at} is not one of the operation steps {choices}")
        a = at if at is not None else rng.choice(choices)
        try:
            q = _miracle_once(problem, rng, a, k)
        except RuntimeError:  # jump: no detectable error of the drawn kind there
            continue
        if first_wrong_step(q.question, q.step_texts) == a and final_answer(q) == problem.answer:
            return q
    raise RuntimeError(f"miracle: no {kind or 'miracle'} at step {at} of {problem.question!r}")


def final_answer(problem: Problem) -> int | None:
    m = _ANSWER_S.match(problem.steps[-1].text)
    return int(m.group(1)) if m else None


def flawed(problem: Problem, rng: random.Random, miracle_share: float) -> Problem:
    """A flawed copy of gold ``problem``: with probability ``miracle_share`` a miracle (wrong step,
    right answer), else a propagated error (wrong answer)."""
    return miracle(problem, rng) if rng.random() < miracle_share else corrupt(problem, rng)


def processbench(split: str, n: int, seed: int = 0, error_fraction: float = 0.5, miracle_share: float = 0.25) -> list[dict]:
    """Mini-ProcessBench: n records shaped like ``rl_prm.data.load_processbench`` (id, problem, steps,
    label, final_answer_correct, generator, split, plus error_kind and answer), ~error_fraction of
    them flawed (of those ~miracle_share with the right final answer, as ProcessBench has), in a
    fixed shuffled order."""
    rng = random.Random(f"world-pb-{split}-{seed}")
    out = []
    for i, p in enumerate(problems(split, n, seed=seed + 1000)):
        q = flawed(p, rng, miracle_share) if rng.random() < error_fraction else p
        out.append({"id": f"world-{split}-{seed}-{i}", "problem": q.question, "steps": q.step_texts,
                    "label": q.label, "final_answer_correct": final_answer(q) == p.answer,
                    "generator": "world-teacher", "split": f"world_{split}",
                    "error_kind": q.meta.get("error_kind"), "answer": str(p.answer)})
    return out


def eval_items(records: list[dict]) -> list[dict]:
    """``rl_prm.eval.processbench`` items (scored prefix, n_steps) from mini-ProcessBench records."""
    return [{"id": r["id"], "split": r["split"], "question": r["problem"], "steps": scored_prefix(r["steps"], r["label"]),
             "n_steps": len(r["steps"]), "label": int(r["label"])} for r in records]


@dataclass
class PolicyExample:
    problem: str
    solution: str
    answer: str
    correct: bool  # every step right (the trace)
    answer_correct: bool = True  # the boxed answer is the gold one


def policy_examples(split: str, n: int, seed: int = 0, flawed_fraction: float = 0.3,
                    miracle_fraction: float = 0.0, miracle_weights: tuple[float, ...] = MIRACLE_WEIGHTS
                    ) -> list[PolicyExample]:
    """Problem -> solution pairs for policy SFT: a miracle (``miracle_fraction``: wrong step, right
    answer; kinds drawn with ``miracle_weights``), a corrupted solution (``flawed_fraction``: wrong
    answer), or gold."""
    rng = random.Random(f"world-policy-{split}-{seed}")
    out = []
    for p in problems(split, n, seed=seed):
        u = rng.random()
        q = miracle(p, rng, weights=miracle_weights) if u < miracle_fraction else corrupt(p, rng) if u < miracle_fraction + flawed_fraction else p
        out.append(PolicyExample(p.question, q.solution, str(p.answer), q.label == -1, final_answer(q) == p.answer))
    return out
