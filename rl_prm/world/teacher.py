"""The world judge's teacher: the critique a step should get, written by rule (the judge's SFT targets).

    critique(question, steps, k, correct)         # R-PRM critique of step k, ending "... (Yes/No)? Yes" or "No"
    critique_parts(question, steps, k, correct)   # the same as (text, critical) pieces
    first_divergence(question, steps, k, correct, text)   # the first section where ``text`` departs from it

The critique is a checklist a small model can follow (``critique_parts``): the Now Step and the
question's data are quoted verbatim, every check ends in its own decision, the calculation is checked
by the reverse operation, and the verdict is the AND of the checks. SFT trains on it (rl_prm.world.judge),
judge targets are kept only where it supports their label (rl_prm.world.judge_units), checked DPO pairs
and the error diagnosis compare the judge's critiques with it (rl_prm.world.dpo, rl_prm.world.judge_errors).
TEACHER_VERSION names it in the judge's cache key and the world's build hash (rl_prm.world.release).
"""

from __future__ import annotations

import re

from rl_prm.world.tasks import _ANSWER_S, _OP_S, _START_S, _SYM, _VERB_OF, ORDINALS, question_ops

_SYMBOL = {"add": "+", "sub": "-", "mul": "*"}
TEACHER_VERSION = 7  # part of the judge's cache key: 7 = every comparison of two amounts written as |x - y| = d


def _claim(text: str) -> tuple[str, str, int, str, int, int, int, int] | None:
    """(ordinal, verb, stated amount, op computed, a, b, c) of an operation step, None if it does not parse."""
    m = _OP_S.match(text.strip())
    if not m:
        return None
    ordinal, verb, said, a, sym, b, c = m.groups()
    return ordinal, verb, int(said), _SYM[sym], int(a), int(b), int(c)


def _value(text: str) -> int | None:
    """The amount a step ends with (start, operation result or boxed answer)."""
    t = text.strip()
    for rx, g in ((_START_S, 1), (_OP_S, 7), (_ANSWER_S, 1)):
        m = rx.match(t)
        if m:
            return int(m.group(g))
    return None


def _clause(question: str, i: int) -> str:
    """The question's sentence for operation i (0-based), verbatim ("Second, Ava buys 3 more.")."""
    j = question.index(f"{ORDINALS[i]}, ")
    return question[j: question.index(".", j) + 1]


def _reverse(op: str, a: int, b: int, c: int) -> tuple[str, int, int]:
    """The reverse check of "a op b = c": (expression, its value, the value it should have)."""
    if op == "add":
        return f"{c} - {b}", c - b, a
    if op == "sub":
        return f"{c} + {b}", c + b, a
    return f"{c} - {a}", c - a, a  # a * 2 = c  <=>  c - a = a (the world multiplies by 2 only)


def _diff(x: int | None, y: int | None) -> list[tuple[str, bool]]:
    """The critique pieces " |x - y| = d:" (d critical): a check of two amounts is decided on whether one
    computed token is 0, which the tiny judge learns, where deciding x == y from the two copied amounts
    it did not; the absolute value keeps signed results (" -2", the same "-" token as " - 2") out of
    the critique, which the judge confused after DPO (docs/world.md)."""
    d = " none" if x is None or y is None else f" {abs(x - y)}"
    return [(f" |{x} - {y}| =", False), (d, True), (":", False)]


def critique_parts(question: str, steps: list[str], k: int, correct: bool) -> list[tuple[str, bool]]:
    """The teacher critique of step ``k`` (0-based) as (text, critical) pieces: joined, they are the
    critique (``critique``); critical pieces are what the verdict depends on (the quoted and
    recomputed amounts and every decision), which SFT weighs extra (rl_prm.world.judge.judge_examples).

    A checklist in the R-PRM sections: the Now Step and the question's data are quoted VERBATIM (so
    the amounts the checks use are a short copy away inside the critique: the judge otherwise wrote
    the previous amount where the step's result belongs, docs/world.md),
    each check ends in its own decision ("...: correct." / "...: wrong."), and the calculation is
    checked by the REVERSE operation (as the R-PRM template asks), on the claimed result: the
    step's equation is restated, then reversed ("a + b = c. Reverse: c - b = ...", which should give
    a), so the claimed result c is three tokens back when the reverse needs it (copied from the Now
    Step alone it was the judge's weakest token, docs/world.md). (A forward recomputation alone,
    "a + b = ", would repeat the step's own text, and a small model then copies the claimed result
    instead of computing.)
    Every comparison of two amounts (stated vs the question's, reverse result vs the previous amount,
    answer vs the last amount) is written as their absolute difference, "|x - y| = d: decision"
    (``_diff``), so the decision reads one computed token.
    The conclusion is wrong iff some check is, which for steps up to the first error is the label
    ``correct``."""
    start, ops = question_ops(question)
    now = steps[k].strip()
    prev_val = _value(steps[k - 1]) if k > 0 else None
    dec = lambda ok: (" correct" if ok else " wrong", True)  # noqa: E731
    out: list[tuple[str, bool]] = [("Analysis:\n**Previous Steps Analysis**: ", False)]
    out += ([("There are no Previous Steps.", False)] if k == 0 else
            [("The Previous Steps end with", False), (f" {prev_val}", True), (".", False)])
    claim = _claim(now) if 0 < k <= len(ops) else None
    if k == 0:
        v = _value(now)
        out += [("\n**Now Step Analysis**: The Now Step says:", False), (f" {now}", True),
                (" It states the starting amount:", False), (f" {v}", True),
                (f".\n**Data Source Analysis**: The question says: {question[: question.index('.') + 1]}", False),
                (f"\n**Consistency Analysis**: {v} for {start}.", False), *_diff(v, start), dec(v == start),
                (".\n**Calculation Analysis**: There is no calculation in the Now Step.", False)]
    elif claim is not None:
        ordinal, verb, said, c_op, a, b, c = claim
        op, b_q = ops[k - 1]
        expr, got, want = _reverse(c_op, a, b, c)
        out += [("\n**Now Step Analysis**: The Now Step says:", False), (f" {now}", True),
                (f"\n**Data Source Analysis**: The question says: {_clause(question, k - 1)}", False),
                (f"\n**Consistency Analysis**: {verb} {said} for {_VERB_OF[op]} {b_q}.", False), *_diff(said, b_q),
                dec((verb, said) == (_VERB_OF[op], b_q)),
                (f". {a} {_SYMBOL[c_op]} {b} for {prev_val} {_SYMBOL[op]} {b_q}:", False),
                dec((a, c_op, b) == (prev_val, op, b_q)),
                (".\n**Calculation Analysis**:", False), (f" {a} {_SYMBOL[c_op]} {b} = {c}", True),
                (". Reverse:", False), (f" {expr}", True), (" =", False), (f" {got}", True),
                (f", which should be {want}.", False), *_diff(got, want), dec(got == want), (".", False)]
    else:
        v = _value(now)
        last_prev = _claim(steps[k - 1]) if k > 1 else None
        done = last_prev[0] if last_prev else "start"
        out += [("\n**Now Step Analysis**: The Now Step says:", False), (f" {now}", True),
                (" It states the final answer:" if _ANSWER_S.match(now) else " It is unclear:", False), (f" {v}", True),
                (f".\n**Data Source Analysis**: The last Previous Step is the {done} operation; the question's last "
                 f"operation is the {ORDINALS[len(ops) - 1]} one.", False),
                (f"\n**Consistency Analysis**: {done} for {ORDINALS[len(ops) - 1]}:", False),
                dec(done == ORDINALS[len(ops) - 1] and k - 1 == len(ops)),
                (f".\n**Calculation Analysis**: {v}, which should be {prev_val}.", False), *_diff(v, prev_val),
                dec(v == prev_val),
                (".", False)]
    out += [("\nConclusion: The Now Step is", False), dec(correct),
            (".\nVerification: Is the step correct (Yes/No)?", False), (" Yes" if correct else " No", True)]
    return out


def critique(question: str, steps: list[str], k: int, correct: bool) -> str:
    """Teacher critique of step ``k`` (0-based) in the R-PRM format, ending with the verdict line
    (``critique_parts`` joined). ``correct`` is the label (steps before the first error are correct)."""
    return "".join(t for t, _ in critique_parts(question, steps, k, correct))


_SECTION = re.compile(r"\*\*([A-Za-z ]+)\*\*: |\n(Conclusion): |\n(Verification): ")


def sections(text: str) -> list[tuple[str, str]]:
    """(section name, its text) in order; text before the first section is "Analysis"."""
    out, name, pos = [], "Analysis", 0
    for m in _SECTION.finditer(text):
        out.append((name, text[pos: m.start()].strip()))
        name, pos = next(g for g in m.groups() if g), m.end()
    out.append((name, text[pos:].strip()))
    return out


def first_divergence(question: str, steps: list[str], k: int, correct: bool, text: str) -> str | None:
    """Name of the first section of ``text`` that differs from the teacher critique of step ``k``
    (label ``correct``), "format" when the sections themselves differ, None when it is the teacher's."""
    want, got = sections(critique(question, steps, k, correct)), sections(text)
    if [n for n, _ in want] != [n for n, _ in got]:
        return "format"
    return next((wn for (wn, wt), (_, gt) in zip(want, got) if wt != gt), None)
