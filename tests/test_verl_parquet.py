"""A user's own data in verl's RL parquet schema trains on the local backend as on verl: files written
by `rl-prm data prep` and files written the way verl's examples/data_preprocess/gsm8k.py writes them
(datasets.Dataset.to_parquet). Other shapes fail at load with one line naming the column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."
# GSM8K-style problems, short enough for the tiny model's prompt budget
PROBLEMS = [
    ("Tom has 3 apples and buys 4 more. How many apples does he have?", "Tom has 3 + 4 = 7 apples.\n#### 7", "7"),
    ("A box holds 6 pens. How many pens are in 2 boxes?", "2 boxes hold 2 * 6 = 12 pens.\n#### 12", "12"),
    ("Ann had 10 stickers and gave away 4. How many are left?", "She has 10 - 4 = 6 left.\n#### 6", "6"),
    ("Each of 3 kids has 5 marbles. How many marbles in all?", "3 * 5 = 15 marbles.\n#### 15", "15"),
]


def write_verl_example(path: Path, split: str = "train") -> Path:
    """A parquet file as verl's examples/data_preprocess/gsm8k.py writes it (datasets.map + to_parquet)."""
    import datasets

    rows = [{"data_source": "openai/gsm8k",
             "prompt": [{"role": "user", "content": q + " " + INSTRUCTION}],
             "ability": "math",
             "reward_model": {"style": "rule", "ground_truth": gold},
             "extra_info": {"split": split, "index": i, "answer": answer, "question": q}}
            for i, (q, answer, gold) in enumerate(PROBLEMS)]
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


def write_table(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), str(path))
    return path


def verl_dataset(path: Path, tokenizer, tmp_path: Path):
    """verl's own loader (RLHFDataset, as its trainer builds it) over `path`."""
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    cfg = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 512, "filter_overlong_prompts": True,
                            "filter_overlong_prompts_workers": 1, "cache_dir": str(tmp_path / "verl_cache")})
    return RLHFDataset(data_files=[str(path)], tokenizer=tokenizer, config=cfg)


@pytest.fixture(scope="module")
def policy_tokenizer(tiny_policy_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_policy_dir)


def test_prep_and_verl_example_files_read_the_same_on_both_backends(tmp_path, policy_tokenizer):
    import pyarrow.parquet as pq

    from rl_prm.data.datasets import load_data
    from rl_prm.data.prep import prep
    from rl_prm.data.verl_schema import ARROW_SCHEMA
    from rl_prm.score.verifiable import verifiable_rewards
    from rl_prm.verl_ext.reward_manager import question_of

    prep(tmp_path, ["gsm8k"], limit=3, verbose=False)
    prepped = tmp_path / "gsm8k_train.parquet"
    assert pq.read_schema(prepped).remove_metadata().equals(ARROW_SCHEMA)  # `rl-prm data prep` writes verl's schema
    example = write_verl_example(tmp_path / "example.parquet")
    for path in (prepped, example):
        table = pq.read_table(path).to_pylist()
        rows = load_data(str(path), "train", None, seed=0)  # local backend
        items = verl_dataset(path, policy_tokenizer, tmp_path)  # verl backend
        assert len(rows) == len(items) == len(table)
        for rec, row, i in zip(table, rows, range(len(rows))):
            item = items[i]
            assert row["prompt"] == rec["prompt"] == list(item["raw_prompt"])
            assert row["problem"] == rec["extra_info"]["question"] == question_of(item)  # the judge's question
            assert row["answer"] == rec["reward_model"]["ground_truth"] == item["reward_model"]["ground_truth"]
            assert row["source"] == rec["data_source"] == item["data_source"]
        # the verifiable reward grades against the file's ground truth
        gold = rows[0]["answer"]
        assert verifiable_rewards(rows[:1] * 2, [f"so \\boxed{{{gold}}}", "so \\boxed{-999}"]) == [1.0, 0.0]


def test_prompt_and_ground_truth_shapes(tmp_path):
    """prompt as messages or a plain string; ground_truth as str, number or list; no extra_info / data_source."""
    from rl_prm.config import load_recipe
    from rl_prm.data.datasets import load_data
    from rl_prm.score.verifiable import verifiable_rewards

    path = write_table(tmp_path / "mixed.parquet", [
        {"prompt": "What is 2 + 3?", "reward_model": {"ground_truth": [5.0, 6.5]}},
        {"prompt": "Half of 1?", "reward_model": {"ground_truth": [0.5]}},
    ])
    rows = load_data(str(path), "train", None, seed=0)
    assert rows[0]["prompt"] == [{"role": "user", "content": "What is 2 + 3?"}]
    assert rows[0]["problem"] == "What is 2 + 3?" and rows[0]["source"] == "unknown"
    assert rows[0]["answer"] == ["5.0", "6.5"]  # any of them is right
    assert verifiable_rewards([rows[0]] * 3 + [rows[1]] * 2,
                              ["\\boxed{5}", "\\boxed{6.5}", "\\boxed{7}", "\\boxed{\\frac{1}{2}}", "\\boxed{2}"]) == \
        [1.0, 1.0, 0.0, 1.0, 0.0]
    ints = write_table(tmp_path / "ints.parquet", [
        {"data_source": "mine", "reward_model": {"style": "rule", "ground_truth": 12},
         "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "3*4?"}]}])
    (row,) = load_data(str(ints), "train", None, seed=0)
    assert row["answer"] == "12" and row["problem"] == "3*4?" and row["source"] == "mine" and len(row["prompt"]) == 2

    # a plain-string prompt trains locally; verl's RLHFDataset needs messages: refused at load, naming it
    common = ["model.policy=tiny", "model.judge=tiny", f"data.train={path}", f"data.test={path}"]
    assert load_recipe(ROOT / "recipes" / "tiny_cpu.yaml", common).data.train == str(path)
    with pytest.raises(ValueError, match=r"data.train .*mixed.parquet: column 'prompt' holds plain strings"):
        load_recipe(ROOT / "recipes" / "tiny_cpu.yaml", common + ["trainer.backend=verl", "reward.prm.num_workers=1"])


def test_rows_that_cannot_train_are_skipped_and_counted(tmp_path, capsys):
    from rl_prm.data.datasets import load_data

    path = write_table(tmp_path / "holes.parquet", [
        {"prompt": [{"role": "user", "content": "1+1?"}], "reward_model": {"ground_truth": "2"}},
        {"prompt": [{"role": "user", "content": "2+2?"}], "reward_model": {"ground_truth": None}},
        {"prompt": [{"role": "user", "content": "3+3?"}], "reward_model": {"ground_truth": " "}},
        {"prompt": [], "reward_model": {"ground_truth": "9"}},
    ])
    rows = load_data(str(path), "train", None, seed=0)
    assert [r["problem"] for r in rows] == ["1+1?"]
    err = capsys.readouterr().err
    assert "skipped 3 rows that cannot train (2 no reward_model.ground_truth, 1 no user message in prompt)" in err
    assert load_data(str(path), "train", 1, seed=0) == rows  # a limit counts rows that train


@pytest.mark.parametrize("rows, message", [
    ([{"question": "1+1?", "answer": "2"}], "no column 'prompt': a verl RL parquet needs prompt (chat messages) and "
                                            "reward_model.ground_truth (has: question, answer)"),
    ([{"prompt": [{"role": "user", "content": "1+1?"}], "answer": "2"}], "no column 'reward_model'"),
    ([{"prompt": [{"role": "user", "content": "1+1?"}], "reward_model": {"style": "rule"}}],
     "column 'reward_model' (struct<style: string>) has no field 'ground_truth'"),
    ([{"prompt": ["1+1?"], "reward_model": {"ground_truth": "2"}}], "column 'prompt' is list<element: string>"),
    ([{"prompt": [{"role": "user", "content": "1+1?"}], "reward_model": {"ground_truth": {"x": "2"}}}],
     "column 'reward_model.ground_truth' is struct<x: string>"),
    ([{"prompt": [{"role": "user", "content": "1+1?"}], "reward_model": {"ground_truth": "2"}, "extra_info": "{}"}],
     "column 'extra_info' is string"),
])
def test_wrong_shapes_fail_at_load_naming_the_column(tmp_path, capsys, rows, message):
    """`rl-prm train` exits 2 with one line naming the column, before any run dir or engine exists."""
    from rl_prm.cli import main

    path = write_table(tmp_path / "bad.parquet", rows)
    out = tmp_path / "runs"
    rc = main(["train", str(ROOT / "recipes" / "tiny_cpu.yaml"), f"run.output_dir={out}", f"data.train={path}",
               "data.test=world"])
    err = capsys.readouterr().err
    assert rc == 2 and f"data.train {path}: {message}" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def _questions(path: Path) -> dict[str, object]:
    import pyarrow.parquet as pq

    return {r["extra_info"]["question"]: r["reward_model"]["ground_truth"] for r in pq.read_table(path).to_pylist()}


@pytest.mark.slow
def test_prep_and_verl_example_files_train_two_steps_on_the_local_backend(tmp_path, local_engines, local_run):
    from rl_prm.backends.local import train
    from rl_prm.config import load_recipe
    from rl_prm.data.prep import prep

    prep(tmp_path / "prep", ["gsm8k"], limit=4, verbose=False)
    files = {"prep": tmp_path / "prep" / "gsm8k_train.parquet",
             "example": write_verl_example(tmp_path / "verl_example.parquet")}
    for name, path in files.items():  # on the session's policy and judge engines
        cfg = load_recipe(ROOT / "recipes" / "tiny_cpu.yaml", [
            f"run.output_dir={tmp_path / 'runs'}", f"run.name={name}", *local_run,
            f"data.train={path}", f"data.test={path}", "data.test_limit=2", "trainer.total_steps=2",
            "trainer.eval_every=0", "trainer.val_before_train=false", "trainer.save_every=0",
            "trainer.logger=[console]"])
        s = train(cfg, engines=local_engines)
        assert s.steps == [1, 2], name
        run = tmp_path / "runs" / name
        metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
        assert [m["step"] for m in metrics] == [1, 2]
        for m in metrics:
            assert m["prm/steps_scored"] > 0 and m["actor/response_tokens"] > 0 and 0 <= m["reward/vr_mean"] <= 1
        # the rollouts are the file's problems, graded against the file's ground truth
        golds = _questions(path)
        rollouts = [json.loads(x) for x in (run / "rollouts.jsonl").read_text().splitlines() if x.strip()]
        assert rollouts and all(r["question"] in golds and r["answer"] == golds[r["question"]] for r in rollouts)
