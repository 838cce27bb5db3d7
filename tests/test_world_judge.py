"""World judge teacher: exact R-PRM critique format, verdicts equal the labels, and the critique's
checks expose every error kind (so the verdict is learnable from the text); DPO pairs the judge's own
right and wrong critiques and its loss prefers the right ones."""

from __future__ import annotations

import random
import re

import pytest

from rl_prm.score.prompt import VERDICT_PHRASE
from rl_prm.world.tasks import processbench
from rl_prm.world.teacher import critique, critique_parts

SECTIONS = ["**Previous Steps Analysis**:", "**Now Step Analysis**:", "**Data Source Analysis**:",
            "**Consistency Analysis**:", "**Calculation Analysis**:"]


def _scored(records):
    for r in records:
        last = r["label"] if r["label"] >= 0 else len(r["steps"]) - 1
        for k in range(last + 1):
            yield r, k, r["label"] == -1 or k < r["label"]


def test_critiques_follow_the_rprm_format_and_the_labels():
    n_wrong = 0
    kinds = set()
    for r, k, ok in _scored(processbench("test", 160, seed=4)):
        c = critique(r["problem"], r["steps"], k, ok)
        assert c.startswith("Analysis:\n")
        pos = [c.index(s) for s in SECTIONS]
        assert pos == sorted(pos)
        assert c.endswith(f"{VERDICT_PHRASE} {'Yes' if ok else 'No'}")
        assert c.count("Conclusion: The Now Step is correct.") == ok
        # the checklist itself shows the error (or its absence) before the verdict: some check is wrong
        checks = re.findall(r": (correct|wrong)\.", c.split("Conclusion:")[0])
        assert checks and (("wrong" in checks) == (not ok)), (r["error_kind"], k, c)
        n_wrong += not ok
        kinds.add(r["error_kind"]) if not ok else None
    assert n_wrong >= 40 and len(kinds) == 7  # every error and miracle kind is caught by its own check


def test_the_question_is_quoted_verbatim_and_the_calculation_reversed():
    r = next(r for r in processbench("test", 80, seed=1) if r["error_kind"] == "slip")
    k = r["label"]
    c = critique(r["problem"], r["steps"], k, False)
    quote = c.split("The question says: ")[1].split("\n")[0]
    assert quote in r["problem"] and quote.endswith(".")
    rev = re.search(r"Reverse: (-?\d+) ([+-]) (-?\d+) = (-?\d+), which should be (-?\d+)\. "
                    r"\|(-?\d+) - (-?\d+)\| = (\d+): wrong\.", c)
    a, sym, b, got, want, x, y, d = rev.groups()
    assert int(got) == (int(a) - int(b) if sym == "-" else int(a) + int(b)) and int(got) != int(want)
    assert (x, y) == (got, want) and int(d) == abs(int(got) - int(want)) != 0
    crit = "".join(t for t, is_key in critique_parts(r["problem"], r["steps"], k, False) if is_key)
    assert crit.endswith(" wrong No") and got in crit  # the recomputed amount and the decisions are critical


def test_every_check_of_two_amounts_is_decided_on_their_difference():
    """Each comparison of two amounts is written "|x - y| = d: decision", d computed right and the
    decision "correct" exactly when d is 0, in every kind of step (start, operation, answer)."""
    seen = set()
    for r, k, ok in _scored(processbench("test", 120, seed=5)):
        c = critique(r["problem"], r["steps"], k, ok)
        diffs = re.findall(r"\|(-?\d+) - (-?\d+)\| = (\d+): (correct|wrong)\.", c)
        assert diffs, c
        for x, y, d, decision in diffs:
            assert int(d) == abs(int(x) - int(y)) and (decision == "correct") == (int(d) == 0), c
            seen.add(decision)
        if not ok and r["error_kind"] == "misquote":
            said_vs_question = re.search(r"Consistency Analysis\*\*: [a-z ]+? (\d+) for [a-z ]+? (\d+)\. "
                                         r"\|\1 - \2\| = (\d+): wrong\.", c)
            assert said_vs_question and int(said_vs_question.group(3)) != 0, c
            seen.add("misquote")
    assert seen == {"correct", "wrong", "misquote"}


def test_key_positions_are_the_critical_tokens(tmp_path):
    from rl_prm.world.cache import loaded_tokenizer
    from rl_prm.world.judge import judge_examples
    from rl_prm.world.judge_units import synthetic_units

    tok = loaded_tokenizer(tmp_path)
    for (ids, start, keys), (_, steps, k, _) in zip(judge_examples(tok, 12, seed=3), synthetic_units(12, seed=3)):
        assert start < keys[0] and keys == sorted(keys) and keys[-1] == len(ids) - 2
        assert tok.decode([ids[keys[-1]]]) in (" Yes", " No")
        words = {tok.decode([ids[i]]).strip() for i in keys}
        assert {"correct", "wrong"} & words  # the decisions
        quote = {tok.decode([t]).strip() for t in tok.encode(" " + steps[k], add_special_tokens=False)}
        assert quote <= words  # the Now Step, quoted verbatim
        assert all(w in ("correct", "wrong", "Yes", "No", "-", "+", "*", "=") or w.isdigit() or w in quote for w in words), words


def test_step_accuracy_counts_correct_steps_and_first_errors_only():
    from rl_prm.world.judge_eval import step_accuracy

    items = [{"id": "a", "label": -1}, {"id": "b", "label": 1}]
    records = {"a": {"p_yes": [[0.9, 0.9], [0.2, 0.9]]},          # K=1: 2nd step missed; K=2: mean 0.55, judged correct
               "b": {"p_yes": [[0.9, 0.1], [0.4, 0.8], [0.1, 0.1]]}}  # label 1: step 2 (after the error) is not counted
    assert step_accuracy(items, records, 1) == {"correct_steps_yes": 66.7, "n_correct_steps": 3,
                                                "error_steps_no": 100.0, "n_error_steps": 1}
    assert step_accuracy(items, records, 2) == {"correct_steps_yes": 66.7, "n_correct_steps": 3,
                                                "error_steps_no": 0.0, "n_error_steps": 1}


def test_dpo_pairs_right_against_wrong_verdicts_of_the_same_target():
    from rl_prm.world.dpo import make_pairs, verdict_of

    yes, no = "Analysis: ...\nVerification: Is the step correct (Yes/No)? Yes", "... Is the step correct (Yes/No)? No"
    assert (verdict_of(yes), verdict_of(no), verdict_of("Analysis: cut")) == (True, False, None)
    units = [("q", ["s"], 0, True), ("q", ["s"], 0, False), ("q", ["s"], 0, True)]
    samples = [[([1], yes), ([2], no), ([3], "cut off"), ([4], yes)],   # right: 1, 4; wrong: 2, 3
               [([5], no), ([6], no)],                                  # all right: no pair
               [([7], no)]]                                             # all wrong: no pair
    pairs, facts = make_pairs(units, samples, max_per_unit=3, rng=random.Random(0))
    assert len(pairs) == 2 and {p[0] for p in pairs} == {0}
    assert all(c in ([1], [4]) and r in ([2], [3]) for _, c, r in pairs)
    assert facts == {"critiques": 7, "critique_accuracy": pytest.approx(4 / 7, abs=1e-4), "pairs": 2,
                     "units_with_pairs": 1}


def test_checked_dpo_pairs_reject_a_right_verdict_reached_through_a_wrong_check():
    """With ``checked``, a critique that copies the previous amount into its reverse check and still
    says Yes is rejected, next to the teacher's own critique as chosen; verdict-only pairing has no pair."""
    from rl_prm.world.dpo import make_pairs

    q = "Ava has 6 books. First, Ava gives away 1. Second, Ava gives away 3. How many books does Ava have now?"
    steps = ["Ava starts with 6 books.", "First, Ava gives away 1, so Ava has 6 - 1 = 5 books."]
    good = critique(q, steps, 1, True)
    assert "Reverse: 5 + 1 = 6, which should be 6. |6 - 6| = 0: correct." in good
    lucky = good.replace("Reverse: 5 + 1 = 6", "Reverse: 6 + 1 = 6")
    units, samples = [(q, steps, 1, True)], [[([1], good), ([2], lucky)]]
    pairs, facts = make_pairs(units, samples, max_per_unit=2, rng=random.Random(0), checked=True)
    assert pairs == [(0, [1], [2])]
    assert facts["critique_accuracy"] == 1.0 and facts["checked_accuracy"] == 0.5
    assert make_pairs(units, samples, max_per_unit=2, rng=random.Random(0))[0] == []


def test_dpo_raises_the_chosen_critique_over_the_rejected_one():
    """A few DPO steps on a tiny random model: the chosen continuation's log-prob margin over the
    rejected one (against the frozen start) grows, so the loss falls below log 2."""
    import math

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rl_prm.world.dpo import DPOConfig, _logps, train_dpo

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=0))

    class Tok:
        pad_token_id = 0

    prompt = [5, 6, 7, 8, 9]
    pairs = [(prompt + [10 + i], [20, 21, 22, 3], [30, 31, 32, 3]) for i in range(4)]
    seqs = [(p + c, len(p)) for p, c, _ in pairs] + [(p + r, len(p)) for p, _, r in pairs]
    before = _logps(model, seqs, 0, prefix=4, grad=False)
    facts = train_dpo(model, Tok(), pairs, DPOConfig(steps=30, batch_size=4, lr=5e-3, beta=0.5), log_every=0)
    after = _logps(model, seqs, 0, prefix=4, grad=False)
    gain = (after[:4] - before[:4]) - (after[4:] - before[4:])
    assert (gain > 0).all() and facts["dpo_final_loss"] < math.log(2) and facts["dpo_reward_acc"] == 1.0
    assert (after[:4] > before[:4]).all()  # the NLL anchor: chosen critiques get likelier, not only relatively
    # the shared-prefix cache changes nothing: the same log-probs computed without it
    assert torch.allclose(_logps(model, seqs, 0, prefix=0, grad=False), after, atol=1e-4)


def test_dpo_batches_balance_right_and_wrong_steps():
    import torch

    from rl_prm.world.dpo import batch_indices

    labels = [True] * 9 + [False]  # right steps outnumber errors 9 to 1
    gen = torch.Generator().manual_seed(0)
    drawn = [i for _ in range(50) for i in batch_indices(10, 8, gen, labels)]
    assert sum(labels[i] for i in drawn) == len(drawn) // 2  # half of every batch from each side
    plain = [i for _ in range(50) for i in batch_indices(10, 8, gen)]
    assert sum(labels[i] for i in plain) > 0.8 * len(plain)  # without labels: as the pairs come
    assert set(batch_indices(3, 4, gen, [True, True, True])) <= {0, 1, 2}  # one side only: uniform


def test_deepen_adds_layers_that_start_as_the_identity():
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rl_prm.world.judge import deepen

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2)).eval()
    x = torch.randint(0, 50, (2, 12))
    before = model(x).logits
    deepen(model, 2)
    assert model.config.num_hidden_layers == len(model.model.layers) == 4
    assert torch.allclose(model(x).logits, before, atol=1e-6)  # same function until trained
    out = model(x, use_cache=True)  # the cache knows the new layers
    assert len(out.past_key_values) == 4


def test_first_divergence_names_the_check_a_critique_got_wrong():
    from rl_prm.world.teacher import first_divergence, sections

    r = next(r for r in processbench("test", 80, seed=2) if r["error_kind"] == "slip")
    q, steps, k = r["problem"], r["steps"], r["label"]
    teacher = critique(q, steps, k, False)
    assert [n for n, _ in sections(teacher)] == ["Analysis", "Previous Steps Analysis", "Now Step Analysis",
                                                 "Data Source Analysis", "Consistency Analysis",
                                                 "Calculation Analysis", "Conclusion", "Verification"]
    assert first_divergence(q, steps, k, False, teacher) is None
    # a judge that computes the reverse check wrong (and so calls the slip correct)
    rev = re.search(r"Reverse: [^=]+= (-?\d+), which should be (-?\d+)\. [^:]+: wrong\.", teacher)
    miscomputed = teacher.replace(rev.group(0), rev.group(0).replace(f"= {rev.group(1)},", f"= {rev.group(2)},")
                                  .replace("wrong.", "correct.")).replace("is wrong.", "is correct.")
    assert first_divergence(q, steps, k, False, miscomputed) == "Calculation Analysis"
    # a judge whose checks all agree with the teacher's but whose conclusion does not follow from them
    assert first_divergence(q, steps, k, False, teacher.replace("is wrong.", "is correct.")) == "Conclusion"
    # the correct label's critique of an earlier step departs in the previous amount it quotes
    prev = critique(q, steps, k - 1, True)
    bad = prev.replace("end with", "end with 1", 1) if k > 1 else prev.replace("There are no", "There are")
    assert first_divergence(q, steps, k - 1, True, bad) == "Previous Steps Analysis"
    assert first_divergence(q, steps, k, False, "Analysis: the step is fine. Yes") == "format"


def test_judge_unit_mix_picks_the_kind_of_flaw_judged():
    """Misquotes only, judged at the error: the teacher's critique finds the stated amount wrong and every
    other check right (the case the judge must decide from the amount itself)."""
    from rl_prm.world.judge_units import UnitMix, synthetic_units

    units = synthetic_units(40, 0, UnitMix(flawed_fraction=1.0, miracle_share=1.0, miracle_weights=(1, 0, 0), at_error=1.0))
    assert units and not any(correct for *_, correct in units)
    for q, steps, k, correct in units:
        decisions = [t.strip() for t, crit in critique_parts(q, steps, k, correct) if t.strip() in ("correct", "wrong")]
        assert decisions == ["wrong", "correct", "correct", "wrong"]  # amount, equation, reverse check; conclusion
    assert all(correct for *_, correct in synthetic_units(40, 0, UnitMix(flawed_fraction=0.0)))


def test_dpo_sampling_prints_progress_while_the_engine_starts_and_samples(monkeypatch, capfd):
    """sample_pairs prints a line at least every rl_prm.progress.EVERY_S seconds while the SFT judge's
    engine starts and while it samples (both print nothing by themselves), and pairs what it sampled."""
    import time

    import rl_prm.progress as progress
    import rl_prm.score.engines as engines
    import rl_prm.world.dpo as dpo
    from rl_prm.world.dpo import DPOConfig, sample_pairs
    from rl_prm.world.tasks import problems

    units = [(p.question, p.step_texts, 0, True) for p in problems("train", 2, seed=0)]

    class Tok:
        def encode(self, text, add_special_tokens=False):
            return [len(text) % 50, 1]

        def convert_tokens_to_ids(self, token):
            return 2

    class Engine:
        @classmethod
        def from_path(cls, path, **kw):
            time.sleep(0.25)
            return cls()

        def generate(self, prompts, n, seeds, params):
            time.sleep(0.25)
            yes, no = critique(*units[0][:3], True), critique(*units[0][:3], False)
            return [[engines.Sample([7, 2], None, text, "stop") for text in (yes, no)] for _ in prompts]

        def shutdown(self):
            pass

    monkeypatch.setattr(dpo, "VLLMJudgeEngine", Engine)
    monkeypatch.setattr(progress, "EVERY_S", 0.05)
    monkeypatch.setattr(dpo, "judge_prompt", lambda tok, q, steps, k: q)
    pairs, labels, facts = sample_pairs("judge-dir", Tok(), units, DPOConfig(samples=2, checked=False))
    assert facts["critiques"] == 4 and len(pairs) == 2 and labels == [True, True]
    out = capfd.readouterr().out.splitlines()
    for phase in ("starting the SFT judge's sampling engine", "sampling 2 critiques of each of 2 steps"):
        lines = [ln for ln in out if phase in ln]
        assert lines[0].endswith("...") and lines[-1].split(": ")[-1].startswith("done in") and len(lines) >= 4, out
