"""Shipped benchmark data, loaders, `rl-prm data` and the verl parquet prep."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest

from rl_prm.data import (
    BENCH_DIR,
    last_boxed,
    list_benchmarks,
    load_benchmark,
    load_prmbench,
    load_processbench,
)

ROWS = {
    ("gsm8k", "train"): 7473,
    ("gsm8k", "test"): 1319,
    ("math", "train"): 7474,
    ("math", "test"): 5000,
    ("math500", "test"): 500,
    ("aime24", "test"): 30,
    ("amc23", "test"): 40,
    ("minerva_math", "test"): 272,
    ("olympiadbench", "test"): 675,
}


@pytest.mark.parametrize("name, split", list(ROWS))
def test_math_benchmarks_rows_and_fields(name, split):
    recs = load_benchmark(name, split)
    assert len(recs) == ROWS[(name, split)]
    ids = [r["id"] for r in recs]
    assert len(set(ids)) == len(ids)
    for r in recs:
        assert {"id", "problem", "answer", "source", "split"} <= set(r)
        assert isinstance(r["problem"], str) and r["problem"].strip()
        assert isinstance(r["answer"], str)
        assert r["source"] == name and r["split"] == split
    missing = sum(not r["answer"] for r in recs)
    assert missing == (4 if (name, split) == ("math", "train") else 0)  # 4 DeepScaleR rows have no answer


def test_gold_answers():
    g = load_benchmark("gsm8k", "test")[0]
    assert g["answer"] == "18" and g["solution"].endswith("#### 18") and "question" in g
    assert all("," not in r["answer"] for r in load_benchmark("gsm8k", "train"))
    assert any("1,450,000" in r["solution"] for r in load_benchmark("gsm8k", "test"))
    m = load_benchmark("math500")[0]
    assert m["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)" and m["id"] == m["unique_id"]
    mt = load_benchmark("math", "test")
    assert all(r["answer"] == last_boxed(r["solution"]) for r in mt[:50])
    assert load_benchmark("amc23")[0]["answer"] == "27"  # 27.0 in the file
    assert load_benchmark("olympiadbench")[0]["answer"] == "2"
    assert load_benchmark("math500", None) == load_benchmark("math500", "test")


def test_last_boxed():
    assert last_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}} c") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{\\{1,2\\}}") == "\\{1,2\\}"
    assert last_boxed("\\boxed 5$") == "5"
    assert last_boxed("none") is None and last_boxed("\\boxed{open") is None


@pytest.mark.parametrize("split, n", [("gsm8k", 400), ("math", 1000), ("olympiadbench", 1000), ("omnimath", 1000)])
def test_processbench(split, n):
    recs = load_processbench(split)
    assert len(recs) == n
    for r in recs:
        assert isinstance(r["steps"], list) and all(isinstance(s, str) for s in r["steps"])
        assert isinstance(r["label"], int) and -1 <= r["label"] < len(r["steps"])
        assert isinstance(r["final_answer_correct"], bool)
        assert r["id"] and r["problem"]
    assert load_benchmark("processbench", split) == recs


def test_prmbench():
    allr = load_prmbench()
    assert len(allr) == 6216
    assert {"original_process", "modified_process", "error_steps", "classification"} <= set(allr[0])
    assert len(load_prmbench("subset400")) == 394
    assert len(load_prmbench("prm800k_test_p1_4o_circular")) == 90
    assert len(load_prmbench("multi_solutions")) == 165
    assert {r["classification"] for r in load_prmbench("circular")} == {"circular"}


@pytest.mark.parametrize(
    "args, match",
    [(("nope",), "unknown benchmark 'nope'"), (("gsm8k", "dev"), "unknown split 'dev'"),
     (("processbench",), "needs a split"), (("processbench", "x"), "unknown split 'x'"), (("prmbench", "zzz"), "PRMBench")],
)
def test_unknown_names(args, match):
    with pytest.raises(ValueError, match=match):
        load_benchmark(*args)


def test_list_benchmarks():
    b = list_benchmarks()
    assert b["gsm8k"] == ["train", "test"] and b["processbench"] == ["gsm8k", "math", "olympiadbench", "omnimath"]
    assert "subset400" in b["prmbench"] and len(b["prmbench"]) == 26


def test_manifest_matches_shipped_files():
    man = json.loads((BENCH_DIR / "MANIFEST.json").read_text())
    assert man["total_gz_bytes"] < 15_000_000
    for f in man["files"]:
        gz = (BENCH_DIR / f["file"]).read_bytes()
        assert gz[4:8] == b"\0\0\0\0"  # deterministic gzip: mtime=0
        raw = gzip.decompress(gz)
        assert hashlib.sha256(raw).hexdigest() == f["sha256"] and len(raw) == f["bytes"]
        assert f["source"] and f["license"] and f["rows"] > 0
        if f["license_file"]:
            assert (BENCH_DIR / f["license_file"]).is_file()


def test_ship_is_reproducible(tmp_path):
    from pathlib import Path

    from rl_prm.data.ship import ship

    src = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (src / "MANIFEST.json").is_file():
        pytest.skip("../shared/data not available")
    man = ship(src, tmp_path, verbose=False)
    for f in man["files"][:6] + man["files"][-2:]:
        assert (tmp_path / f["file"]).read_bytes() == (BENCH_DIR / f["file"]).read_bytes()


def _cli(*argv):
    from rl_prm.cli import main

    return main(list(argv))


def test_cli_list(capsys):
    assert _cli("data", "list") == 0
    out = capsys.readouterr().out
    assert "gsm8k" in out and "1319" in out and "processbench" in out


@pytest.fixture(scope="module")
def prepped(tmp_path_factory):
    out = tmp_path_factory.mktemp("prep")
    assert _cli("data", "prep", "--out", str(out), "--datasets", "gsm8k,math", "--limit", "8") == 0
    return out


def test_prep_writes_verl_schema(prepped):
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = sorted(p.name for p in prepped.glob("*.parquet"))
    assert names == ["gsm8k_test.parquet", "gsm8k_train.parquet", "math_test.parquet", "math_train.parquet"]
    sources = {"gsm8k": "openai/gsm8k", "math_train": "DigitalLearningGmbH/MATH-lighteval", "math_test": "HuggingFaceH4/MATH-500"}
    for name in names:
        t = pq.read_table(prepped / name)
        assert t.num_rows == 8
        assert t.column_names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
        assert t.schema.field("prompt").type == pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
        assert t.schema.field("data_source").type == pa.string()
        rows = t.to_pylist()
        stem = name[: -len(".parquet")]
        want = sources.get(stem) or sources[stem.split("_")[0]]
        for i, r in enumerate(rows):
            assert r["data_source"] == want and r["ability"] == "math"
            assert r["prompt"][0]["role"] == "user" and "\\boxed{}" in r["prompt"][0]["content"]
            assert r["reward_model"]["style"] == "rule" and r["reward_model"]["ground_truth"]
            assert r["extra_info"]["index"] == i and r["extra_info"]["split"] == stem.split("_")[1]
    first = pq.read_table(prepped / "gsm8k_test.parquet").to_pylist()[0]
    assert first["reward_model"]["ground_truth"] == "18"
    assert pq.read_table(prepped / "math_test.parquet").to_pylist()[0]["reward_model"]["ground_truth"] == "\\left( 3, \\frac{\\pi}{2} \\right)"


def test_prep_golds_score_with_reward(prepped):
    import pyarrow.parquet as pq

    from reward_fns.math_verify_reward import compute_score

    for name in ("gsm8k_test.parquet", "math_test.parquet"):
        for r in pq.read_table(prepped / name).to_pylist():
            gt = r["reward_model"]["ground_truth"]
            assert compute_score(data_source=r["data_source"], solution_str=f"\\boxed{{{gt}}}", ground_truth=gt, extra_info=r["extra_info"]) == 1.0


def test_prep_readable_by_verl_rlhf_dataset(prepped, tmp_path):
    rl_dataset = pytest.importorskip("verl.utils.dataset.rl_dataset")
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"filter_overlong_prompts": False, "cache_dir": str(tmp_path), "prompt_key": "prompt"})
    ds = rl_dataset.RLHFDataset(data_files=str(prepped / "math_train.parquet"), tokenizer=None, config=cfg)
    assert len(ds) == 8
    item = ds[2]
    assert item["raw_prompt"][0]["role"] == "user"
    assert item["reward_model"]["style"] == "rule" and item["index"] == 2
    assert item["data_source"] == "DigitalLearningGmbH/MATH-lighteval"


def test_last_boxed_unbalanced_last_box():
    from rl_prm.data.answers import last_boxed

    text = "so \\boxed{12}, then \\boxed{3"  # a truncated response
    assert last_boxed(text) is None  # gold extraction: the last box is incomplete
    assert last_boxed(text, earlier_if_unbalanced=True) == "12"  # what the verifiable reward grades
