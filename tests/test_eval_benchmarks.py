"""Evaluators on the shipped benchmarks with precomputed scores (no model): oracle and all-correct
predictions against hand computations, score files, run directories, the CLI."""

from __future__ import annotations

import json
import random

import pytest

from rl_prm.commands.eval import run_math, run_prmbench, run_processbench
from rl_prm.data import PROCESSBENCH_SPLITS, load_prmbench, load_processbench
from rl_prm.eval.io import _clean, write_jsonl
from rl_prm.eval.metrics import predict_first_error
from rl_prm.eval.processbench import processbench_items, scored_prefix
from rl_prm.eval.prmbench import prmbench_items
from rl_prm.eval.scoring import PrecomputedSource


def _pb_scores(path, fn):
    """Write a ProcessBench scores file: p_yes per step from fn(label, step index, n_samples=3)."""
    rows = [{"id": it["id"], "p_yes": [fn(it["label"], i) for i in range(len(it["steps"]))]}
            for it in processbench_items()]
    write_jsonl(path, rows)
    return path


def test_processbench_oracle_is_100_on_every_split(tmp_path):
    # oracle: steps before the labelled error score high, the error step low (only K=3 gets it right)
    f = _pb_scores(tmp_path / "oracle.jsonl",
                   lambda L, i: [0.9, 0.8, 0.7] if (L < 0 or i < L) else [0.6, 0.1, 0.2])
    res = run_processbench(PrecomputedSource(f), ks=[1, 3], out=tmp_path / "run", progress=False)
    for split in PROCESSBENCH_SPLITS:
        m = res["per_k"]["3"]["splits"][split]
        assert (m["error_acc"], m["correct_acc"], m["f1"]) == (100.0, 100.0, 100.0)
        assert m["n"] == len(load_processbench(split))
        # K=1 reads only the first sample (0.6 >= 0.5): no error is ever found
        assert res["per_k"]["1"]["splits"][split]["error_acc"] == 0.0
    assert res["per_k"]["3"]["avg_f1"] == 100.0
    for name in ("results.json", "table.txt", "scores.jsonl", "f1_vs_k.png"):
        assert (tmp_path / "run" / name).is_file(), name
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["per_k"]["3"]["splits"]["math"]["f1"] == 100.0
    assert "steps[:label+1]" in on_disk["scored_steps"]


def test_processbench_all_correct_and_half_oracle_match_hand_computation(tmp_path):
    f = _pb_scores(tmp_path / "allok.jsonl", lambda L, i: [0.9])
    res = run_processbench(PrecomputedSource(f), ks=[1], out=tmp_path / "a", progress=False)
    for split in PROCESSBENCH_SPLITS:
        m = res["per_k"]["1"]["splits"][split]
        assert (m["error_acc"], m["correct_acc"], m["f1"]) == (0.0, 100.0, 0.0)

    # oracle on items with an even id number, "all correct" (-1) on the others
    def even(rid):
        return int(rid.rsplit("-", 1)[1]) % 2 == 0

    rows = []
    for it in processbench_items():
        L, ok = it["label"], even(it["id"])
        rows.append({"id": it["id"], "step_scores": [0.1 if (ok and i == L) else 0.9 for i in range(len(it["steps"]))]})
    write_jsonl(tmp_path / "half.jsonl", rows)
    res = run_processbench(PrecomputedSource(tmp_path / "half.jsonl"), ks=[1], out=tmp_path / "h", progress=False)
    assert list(res["per_k"]) == ["stored"]  # no per-sample values in the file: stored scores
    for split in PROCESSBENCH_SPLITS:
        data = load_processbench(split)
        n_err = sum(r["label"] != -1 for r in data)
        hit = sum(r["label"] != -1 and even(r["id"]) for r in data)
        a_err, a_cor = 100.0 * hit / n_err, 100.0
        m = res["per_k"]["stored"]["splits"][split]
        assert m["error_acc"] == pytest.approx(a_err)
        assert m["correct_acc"] == a_cor
        assert m["f1"] == pytest.approx(2 * a_err * a_cor / (a_err + a_cor))


def test_scoring_only_the_prefix_changes_no_prediction():
    rng = random.Random(0)
    for r in load_processbench("gsm8k")[:200]:
        full = [rng.random() for _ in r["steps"]]
        pre = full[: len(scored_prefix(r["steps"], r["label"]))]
        for t in (0.3, 0.5, 0.7):
            p_full, p_pre = predict_first_error(full, t), predict_first_error(pre, t)
            # correct iff correct: the prefix prediction equals the label exactly when the full one does
            assert (p_full == r["label"]) == (p_pre == r["label"])
    it = {i["id"]: i for i in processbench_items(["gsm8k"])}
    for r in load_processbench("gsm8k"):
        n = len(it[r["id"]]["steps"])
        assert n == (len(r["steps"]) if r["label"] == -1 else r["label"] + 1)


def _prmbench_raw_counts():
    """(#correct steps, #error steps) of the modified items, and #steps of the added correct items,
    counted straight from the raw records."""
    pos = neg = added = 0
    seen, seen_red = set(), set()
    for r in load_prmbench():
        key = (r["classification"], r["idx"])
        if r["classification"] == "redundency" and r["idx"] not in seen_red:
            seen_red.add(r["idx"])
            added += len(r["original_process"])
        if key in seen:
            continue
        seen.add(key)
        n = len(r["modified_process"])
        errs = {int(e) for e in r["error_steps"] if 1 <= int(e) <= n}
        neg += len(errs)
        pos += n - len(errs)
    return pos, neg, added


def test_prmbench_oracle_and_all_correct(tmp_path):
    items = prmbench_items()
    write_jsonl(tmp_path / "oracle.jsonl", [
        {"id": it["id"], "step_scores": [0.0 if (i + 1) in it["error_steps"] else 1.0 for i in range(len(it["steps"]))]}
        for it in items])
    res = run_prmbench(PrecomputedSource(tmp_path / "oracle.jsonl"), out=tmp_path / "o", progress=False)
    assert res["overall"]["f1"] == 100.0 and res["overall"]["negative_f1"] == 100.0
    assert res["overall"]["prmscore"] == 100.0
    assert all(m["f1"] == 100.0 for m in res["classes"].values())
    assert res["classes"]["correct"]["tn"] + res["classes"]["correct"]["fp"] == 0

    write_jsonl(tmp_path / "allok.jsonl", [{"id": it["id"], "step_scores": [0.99] * len(it["steps"])} for it in items])
    res = run_prmbench(PrecomputedSource(tmp_path / "allok.jsonl"), out=tmp_path / "a", progress=False)
    pos, neg, added = _prmbench_raw_counts()
    p = pos / (pos + neg)
    o = res["overall"]
    assert (o["tp"], o["fp"], o["tn"], o["fn"]) == (pos, neg, 0, 0)
    assert o["precision"] == pytest.approx(100 * p)
    assert o["recall"] == 100.0
    assert o["f1"] == pytest.approx(100 * 2 * p / (p + 1))
    assert o["negative_recall"] == 0.0 and o["negative_f1"] == 0.0
    assert o["prmscore"] == pytest.approx(100 * p / (p + 1))
    assert res["classes"]["correct"]["tp"] == added
    assert res["overall_with_correct"]["tp"] == pos + added
    assert len([it for it in items if it["classification"] == "correct"]) == len(
        {r["idx"] for r in load_prmbench() if r["classification"] == "redundency"})


def test_precomputed_source_names_missing_and_mismatched_items(tmp_path):
    items = processbench_items(["gsm8k"], limit=3)
    write_jsonl(tmp_path / "s.jsonl", [{"id": items[0]["id"], "step_scores": [0.5] * len(items[0]["steps"])},
                                       {"id": items[1]["id"], "step_scores": [0.5] * (len(items[1]["steps"]) + 1)}])
    src = PrecomputedSource(tmp_path / "s.jsonl")
    with pytest.raises(KeyError, match=items[2]["id"]):
        src.score(items)
    with pytest.raises(ValueError, match="expected"):
        src.score(items[1:2])
    (tmp_path / "bad.jsonl").write_text('{"id": "x", "step_scores": [1]}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        PrecomputedSource(tmp_path / "bad.jsonl")


def test_rerun_refuses_to_mix_and_overwrite_replaces(tmp_path):
    from rl_prm.cli import main

    f = _pb_scores(tmp_path / "s.jsonl", lambda L, i: [0.9, 0.2])
    out = tmp_path / "run"
    base = ["eval", "processbench", "--scores", str(f), "--splits", "gsm8k", "--limit", "30", "--out", str(out),
            "--no-progress"]
    assert main(base + ["--k", "1,2"]) == 0
    assert (out / "f1_vs_k.png").is_file()
    first = json.loads((out / "results.json").read_text())
    assert first["splits"] == ["gsm8k"] and first["n_items"] == 30
    m = first["per_k"]["1"]["splits"]["gsm8k"]
    assert (m["n_error"], m["n_correct"]) == (15, 15)  # --limit takes both kinds of items
    assert main(base + ["--k", "1"]) == 2  # refused: the directory holds a run
    assert json.loads((out / "results.json").read_text()) == first
    assert main(base + ["--k", "1", "--overwrite"]) == 0
    second = json.loads((out / "results.json").read_text())
    assert list(second["per_k"]) == ["1"]
    assert not (out / "f1_vs_k.png").exists()  # the old run's plot is gone, not mixed in
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    # the scores file a run writes reads back as --scores and gives the same numbers
    again = run_processbench(PrecomputedSource(out / "scores.jsonl"), ks=[1], splits=["gsm8k"], limit=30,
                             out=tmp_path / "again", progress=False)
    assert json.loads(json.dumps(_clean(again["per_k"]["1"]["splits"]))) == second["per_k"]["1"]["splits"]


def test_math_from_precomputed_samples_and_scores(tmp_path):
    from rl_prm.eval.math_eval import math_items
    from rl_prm.eval.metrics import pass_at_k

    items = math_items(["math500"], limit=4)
    samples, scores = [], []
    n_correct = [0, 1, 2, 3]
    for it, c in zip(items, n_correct):
        # c correct responses (boxed gold) then wrong ones; the LAST correct one has the best min score
        resp = [f"Step one.\n\nSo the answer is \\boxed{{{it['answer']}}}." for _ in range(c)]
        resp += ["Step one.\n\nSo the answer is \\boxed{123456789}." for _ in range(4 - c)]
        samples.append({"id": it["id"], "responses": resp})
        for j in range(4):
            good = j < c
            scores.append({"id": f"{it['id']}#{j}", "step_scores": [0.9, 0.8 if good else 0.3]})
    write_jsonl(tmp_path / "samples.jsonl", samples)
    write_jsonl(tmp_path / "scores.jsonl", scores)
    res = run_math(datasets=["math500"], n=4, limit=4, samples_file=str(tmp_path / "samples.jsonl"),
                   source=PrecomputedSource(tmp_path / "scores.jsonl"), out=tmp_path / "m", progress=False)
    d = res["datasets"]["math500"]
    assert d["n_problems"] == 4 and res["ks"] == [1, 2, 4]
    for k in (1, 2, 4):
        assert d[f"pass@{k}"] == pytest.approx(100 * sum(pass_at_k(4, c, k) for c in n_correct) / 4)
    # vote: c=0, 1 lose; c=2 ties 2:2 and the class seen first (the correct one) wins; c=3 wins
    assert d["maj@4"] == pytest.approx(100 * 2 / 4)
    assert d["maj@1"] == d["bon_min@1"] == pytest.approx(100 * 3 / 4)  # first sample correct iff c >= 1
    assert d["bon_min@4"] == pytest.approx(100 * 3 / 4)  # the judge finds a correct one whenever there is one
    assert d["bon_last@4"] == pytest.approx(100 * 3 / 4)
    assert (tmp_path / "m" / "results.json").is_file() and (tmp_path / "m" / "samples.jsonl").is_file()


def test_items_the_scorer_refuses_are_padded_and_counted():
    """An item the scorer refuses (PRMBench has 15 items with an empty step) keeps its place: its
    steps count as unscored (predicted correct), and the status is reported."""
    from rl_prm.eval.prmbench import prmbench_results
    from rl_prm.eval.scoring import ScorerSource
    from rl_prm.score.scorer import ItemScore, StepScore

    class FakeScorer:  # the RPRMScorer.score contract, without a model
        def score(self, items):
            out = []
            for it in items:
                if any(not s.strip() for s in it["steps"]):
                    out.append(ItemScore("empty_step", [], "step is empty", 0, 0, 0.0))
                else:
                    out.append(ItemScore("ok", [StepScore(0.2, [0.1, 0.3], 2, 0, None, []) for _ in it["steps"]],
                                         None, 10, 0, 0.0))
            return out

    items = [{"id": "a", "classification": "x", "question": "q", "steps": ["s1", "  "], "error_steps": [2]},
             {"id": "b", "classification": "x", "question": "q", "steps": ["s1", "s2"], "error_steps": [2]}]
    recs = ScorerSource(FakeScorer()).score(items)
    assert recs["a"]["step_scores"] == [None, None] and recs["a"]["status"] == "empty_step"
    assert recs["b"]["p_yes"] == [[0.1, 0.3], [0.1, 0.3]]
    res = prmbench_results(items, recs, threshold=0.5, k=1)
    assert res["unscored_steps"] == 2 and res["status_counts"] == {"empty_step": 1, "ok": 1}
    # item a: step 1 correct & unscored -> tp, step 2 wrong & unscored -> fp; item b at K=1 (0.1): fn, tn
    assert (res["overall"]["tp"], res["overall"]["fp"], res["overall"]["fn"], res["overall"]["tn"]) == (1, 1, 1, 1)
