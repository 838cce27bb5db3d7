"""reward_fns/math_verify_reward.py: formats, malformed inputs, counters, verl signature, threads."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from reward_fns import math_verify_reward as R

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_stats():
    R.reset_stats()
    yield


@pytest.mark.parametrize(
    "solution, gold",
    [
        ("So the total is \\boxed{18}.", "18"),
        ("\\boxed{\\$18}", "18"),
        ("\\boxed{18 dollars}", "18"),
        ("\\boxed{18\\text{ dollars}}", "18"),
        ("\\boxed{\\$1,000.00}", "1000"),
        ("\\boxed{1{,}000}", "1000"),
        ("\\boxed{1,234,567}", "1234567"),
        ("The answer: \\boxed{5.}", "5"),
        ("\\boxed{0.5}", "\\frac{1}{2}"),
        ("\\boxed{\\dfrac{1}{2}}", "0.5"),
        ("\\boxed{1/2}", "\\frac12"),
        ("\\boxed{\\tfrac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}"),
        ("\\boxed{30^\\circ}", "30"),
        ("\\boxed{30}", "30^\\circ"),
        ("\\boxed{10\\%}", "10"),
        ("\\boxed{27}", "27.0"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "(3,\\frac{\\pi}{2})"),
        ("\\boxed{\\{1,3,5\\}}", "1, 3, 5"),
        ("\\boxed{x=5}", "5"),
        ("\\boxed{\\text{(C)}}", "\\text{(C)}"),
        ("\\boxed{C}", "\\text{(C)}"),
        ("\\boxed{\\text{Monday}}", "\\text{Monday}"),
        ("\\fbox{7}", "7"),
        ("first \\boxed{3}, then finally \\boxed{4}", "4"),  # last box counts
        ("\\boxed{\\frac{a}{b+\\frac{1}{2}}}", "\\frac{a}{b+\\frac12}"),  # nested braces
        ("Janet sells 16 - 3 - 4 = 9 eggs.\n#### 18", "18"),  # GSM8K hashes in the solution
        ("... the answer is \\boxed{72}", "Natalia sold 48/2 = 24 clips.\n#### 72"),  # GSM8K gold text
        ("\\boxed{2,125}", "2,125"),
        ("The final answer is $42$.", "42"),  # anchored, no box
        ("\\boxed{5}", ["4", "5"]),  # several acceptable golds
        ("\\boxed{5}", 5),  # numeric gold
        ("\\boxed{\\frac \\pi4 + 2}", "\\frac{\\pi}{4}+2"),
    ],
)
def test_correct_formats(solution, gold):
    d = R.score_detail(solution, gold)
    assert d["score"] == 1.0, d
    assert d["status"] == "correct"


@pytest.mark.parametrize(
    "solution, gold",
    [
        ("\\boxed{19}", "18"),
        ("\\boxed{0.51}", "\\frac{1}{2}"),
        ("\\boxed{4}, then \\boxed{3}", "4"),  # only the last box counts
        ("\\boxed{2\\pi}", "2"),
        ("\\boxed{52_9}", "52_8"),  # base subscript is checked
        ("\\boxed{(3, \\pi)}", "(3,\\frac{\\pi}{2})"),
        ("\\boxed{\\text{(D)}}", "\\text{(C)}"),
        ("#### 17", "18"),
    ],
)
def test_wrong_answers(solution, gold):
    d = R.score_detail(solution, gold)
    assert d["score"] == 0.0, d
    assert d["status"] == "wrong"


@pytest.mark.parametrize(
    "solution, status",
    [
        (None, "malformed"),
        (b"\xff\xfe\xfa", "malformed"),  # not UTF-8
        (12345, "malformed"),
        ("", "no_answer"),
        ("I do not know.", "no_answer"),
        ("\\boxed{}", "no_answer"),
        ("\\boxed{18", "no_answer"),  # truncated box
        ("x" * (R.MAX_SOLUTION_CHARS + 1), "too_long"),
        ("\\boxed{" + "1+" * R.MAX_ANSWER_CHARS + "1}", "too_long"),
    ],
)
def test_malformed_inputs_score_zero_and_count(solution, status):
    d = R.score_detail(solution, "18")
    assert d["score"] == 0.0 and d["status"] == status
    assert R.get_stats()[status] == 1 and R.get_stats()["calls"] == 1


def test_utf8_bytes_and_surrogates_are_accepted():
    assert R.compute_score("x", "\\boxed{18}".encode(), "18") == 1.0
    assert R.compute_score("x", "\\boxed{18} \udcff", "18") == 1.0


@pytest.mark.parametrize("gold", [None, "", b"\xff", True, "1" * (R.MAX_ANSWER_CHARS + 1)])
def test_bad_gold(gold):
    d = R.score_detail("\\boxed{1}", gold)
    assert d["score"] == 0.0 and d["status"] == "bad_gold"


def test_pathological_input_times_out_in_main_thread():
    assert threading.current_thread() is threading.main_thread()
    d = R.score_detail("\\boxed{9^{9^{9^{9}}}}", "5")
    assert d["score"] == 0.0 and d["status"] == "timeout"
    assert R.get_stats()["timeout"] == 1


def test_outer_alarm_is_preserved():
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        assert R.compute_score("s", "\\boxed{\\frac{1}{2}}", "0.5") == 1.0
        left = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 0 < left <= 30.0  # re-armed, not cancelled by math_verify's alarm(0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_verl_keyword_signature_and_extra_kwargs():
    s = R.compute_score(
        data_source="openai/gsm8k", solution_str="... \\boxed{72}", ground_truth="72", extra_info={"index": 0, "split": "test"}
    )
    assert s == 1.0 and isinstance(s, float)
    # verl's reward managers may pass more keyword arguments; they are ignored
    assert R.compute_score(data_source="x", solution_str="\\boxed{1}", ground_truth="2", extra_info=None, foo=1) == 0.0


def test_loadable_by_path_like_verl():
    from verl.utils.import_utils import load_extern_object

    fn = load_extern_object(str(ROOT / "reward_fns" / "math_verify_reward.py"), "compute_score")
    assert fn(data_source="openai/gsm8k", solution_str="\\boxed{3}", ground_truth="3", extra_info={}) == 1.0


def test_counters_and_score_detail_fields():
    R.score_detail("\\boxed{1}", "1")
    R.score_detail("\\boxed{2}", "1")
    R.score_detail("nothing", "1")
    st = R.get_stats()
    assert (st["calls"], st["correct"], st["wrong"], st["no_answer"]) == (3, 1, 1, 1)
    d = R.score_detail("\\boxed{\\dfrac{1}{2}}", "0.5")
    assert set(d) == {"score", "pred", "gold", "status"} and d["pred"] == "\\dfrac{1}{2}" and d["gold"] == "0.5"
    R.reset_stats()
    assert R.get_stats()["calls"] == 0


def test_worker_threads_use_process_pool_and_count():
    results = {}

    def work(i):
        results[i] = [
            R.score_detail("\\boxed{0.5}", "\\frac12")["status"],
            R.score_detail("\\boxed{3}", "4")["status"],
            R.score_detail(None, "4")["status"],
        ]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(results[i] == ["correct", "wrong", "malformed"] for i in range(3)), results
    st = R.get_stats()
    assert (st["calls"], st["correct"], st["wrong"], st["malformed"]) == (9, 3, 3, 3)


def test_worker_thread_timeout_is_bounded():
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("d", R.score_detail("\\boxed{9^{9^{9^{9}}}}", "5")))
    t.start()
    t.join(timeout=120)
    assert out["d"]["status"] == "timeout" and out["d"]["score"] == 0.0


def test_hypothesis_never_raises():
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import given, settings, strategies as st

    @settings(max_examples=60, deadline=None)
    @given(sol=st.one_of(st.none(), st.text(max_size=200), st.binary(max_size=50)), gold=st.one_of(st.text(max_size=20), st.integers()))
    def run(sol, gold):
        v = R.compute_score(data_source="x", solution_str=sol, ground_truth=gold)
        assert v in (0.0, 1.0)

    run()
