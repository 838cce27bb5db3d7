"""Fuzzing the JSONL readers users' files go through (hypothesis): random bytes and random JSON never
crash them, every physical line is accounted for, and a bad line is named by its file and line.

    rl_prm.jsonl.read_lines            every reader's base: one Line per physical line
    rl-prm score (read_items + score_items, the real tiny judge): one output line per input line
    rl_prm.eval.io.read_scores / read_samples (eval --scores / --samples): rows or InputError(PATH:LINE)

CASES counts the examples each fuzz test ran (test_fuzz_cases_ran checks them; run with
--hypothesis-show-statistics for hypothesis's own numbers).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rl_prm.jsonl import InputError, dumps_line, parse_line, read_lines

CASES: Counter = Counter()
FUZZ = settings(deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# JSON values, including the awkward ones: lone surrogates, NaN / Infinity, nesting, odd keys
scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text()
           | st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1))
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                         max_size=4), max_leaves=12)
# things that look like score items, with random types in every field
item_like = st.fixed_dictionaries({}, optional={
    "id": values, "question": st.text(max_size=60) | values, "problem": st.text(max_size=60) | values,
    "steps": st.lists(st.text(max_size=40), max_size=4) | values, "response": st.text(max_size=80) | values})
# items the judge can score (any text, any extra fields)
words = st.text(min_size=1, max_size=40).filter(str.strip)
plausible = st.fixed_dictionaries({"question": words, "steps": st.lists(words, min_size=1, max_size=3)},
                                  optional={"id": values, "extra": values})
lines_of = st.lists(st.one_of(
    plausible.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=80),  # arbitrary bytes (not UTF-8, NULs, CR)
    values.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
    item_like.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.just(b""), st.just(b"   "), st.just(b"\r"), st.just(b"[" * 5000 + b"]" * 5000), st.just(b"\xef\xbb\xbf{}"),
    st.just(b'{"id": ' + b"9" * 5000 + b', "steps": ["x"], "question": "q"}'),  # more digits than int() converts
), max_size=12)


def _file(tmp_path, lines: list[bytes], trailing: bool) -> tuple:
    raw = b"\n".join(line.replace(b"\n", b" ") for line in lines) + (b"\n" if trailing and lines else b"")
    path = tmp_path / "in.jsonl"
    path.write_bytes(raw)
    return path, raw


def _physical_lines(raw: bytes) -> int:
    return raw.count(b"\n") + (1 if raw and not raw.endswith(b"\n") else 0)


@settings(FUZZ, max_examples=600)
@given(raw=st.binary(max_size=400) | lines_of.map(lambda ls: b"\n".join(ls)), max_line=st.sampled_from([16, 64, 1 << 20]))
def test_read_lines_accounts_for_every_line_of_random_bytes(tmp_path_factory, raw, max_line):
    CASES["read_lines bytes"] += 1
    path = tmp_path_factory.mktemp("f") / "x.jsonl"
    path.write_bytes(raw)
    got = list(read_lines(path, max_line_bytes=max_line))
    assert [ln.lineno for ln in got] == list(range(1, _physical_lines(raw) + 1))
    for ln, body in zip(got, raw.split(b"\n")):
        if ln.error is not None:
            assert ln.value is None and ln.error and "\n" not in ln.error
        else:  # the oracle: strict UTF-8 and strict JSON of the line agree with the reader
            assert len(body) <= max_line
            text = body.decode("utf-8").removeprefix("\ufeff" if ln.lineno == 1 else "")
            assert json.loads(text) == ln.value or ln.value != ln.value


@settings(FUZZ, max_examples=400)
@given(v=values)
def test_a_json_line_reads_back_as_written_or_is_named_bad(v):
    CASES["read_lines json"] += 1
    line = parse_line(json.dumps(v).encode("utf-8", "surrogatepass") + b"\n")
    text = json.dumps(v)
    try:  # the oracle: strict JSON (a surrogate pair is one character)
        expected, nan = json.loads(text, parse_constant=lambda c: 1 / 0), False
    except ZeroDivisionError:
        expected, nan = None, True
    if not nan and not _has_surrogate(expected):
        assert line.error is None and line.value == expected
    else:
        assert line.value is None and ("not JSON" in line.error or "lone surrogate" in line.error), line.error
    if not nan:
        dumps_line(expected).encode("utf-8")  # what we write is always valid UTF-8


def _walk(v):
    yield v
    if isinstance(v, dict):
        for k, x in v.items():
            yield k
            yield from _walk(x)
    elif isinstance(v, list):
        for x in v:
            yield from _walk(x)


def _has_surrogate(v) -> bool:
    return any(isinstance(x, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in x) for x in _walk(v))


@settings(FUZZ, max_examples=400)
@given(lines=lines_of, trailing=st.booleans())
def test_eval_readers_return_valid_rows_or_name_the_line(tmp_path_factory, lines, trailing):
    from rl_prm.eval.io import read_samples, read_scores
    from rl_prm.eval.scoring import max_samples, step_scores_at_k

    CASES["eval readers"] += 1
    path, _ = _file(tmp_path_factory.mktemp("e"), lines, trailing)
    for reader in (read_scores, read_samples):
        try:
            rows = reader(path)
        except InputError as e:
            assert str(e).startswith(f"{path}:") and "\n" not in str(e)
            continue
        for row in rows.values():  # what the evaluators do with a row that passed
            if reader is read_scores:
                for k in (None, 1, 3):
                    step_scores_at_k(row, k)
            else:
                assert all(isinstance(r, str) for r in row["responses"])
        if reader is read_scores:
            max_samples(rows)


@pytest.fixture(scope="module")
def scorer(judge_llm):
    from rl_prm.score.engines import VLLMJudgeEngine
    from rl_prm.score.scorer import RPRMScorer, ScoreConfig

    return RPRMScorer(VLLMJudgeEngine(judge_llm), ScoreConfig(k=1, max_critique_tokens=4))


@settings(FUZZ, max_examples=40)
@given(lines=lines_of, trailing=st.booleans(), batch=st.integers(1, 5))
def test_score_gives_one_output_line_per_input_line(tmp_path_factory, scorer, lines, trailing, batch):
    """The real scorer (the session's tiny judge) behind `rl-prm score`'s reader and writer."""
    from rl_prm.commands.score import read_items, score_items, write_jsonl_atomic
    from rl_prm.score.scorer import STATUSES

    CASES["score"] += 1
    d = tmp_path_factory.mktemp("s")
    path, raw = _file(d, lines, trailing)
    records = score_items(scorer, read_items(str(path)), batch_size=batch, progress=False)
    assert [r["line"] for r in records] == list(range(1, _physical_lines(raw) + 1))
    CASES["score: lines scored ok"] += sum(r["status"] == "ok" for r in records)
    CASES["score: lines given a status"] += sum(r["status"] != "ok" for r in records)
    for r in records:
        assert r["status"] in STATUSES and (r["status"] == "ok") == (r["error"] is None)
        if r["status"] != "ok":
            assert r["error"].startswith(f"line {r['line']}: ")
    write_jsonl_atomic(d / "out.jsonl", records)
    back = list(read_lines(d / "out.jsonl"))
    assert len(back) == len(records) and all(ln.error is None for ln in back)


def test_fuzz_cases_ran():
    """The fuzz tests above ran their examples (hypothesis may stop early only on an exhausted space)."""
    print("fuzz cases run:", dict(CASES), "total", sum(CASES.values()))
    if not CASES:
        pytest.skip("run with the fuzz tests above")
    assert all(n >= 40 for k, n in CASES.items() if not k.startswith("score:")), CASES
    assert CASES["score: lines scored ok"] > 0 and CASES["score: lines given a status"] > 0  # both paths ran
