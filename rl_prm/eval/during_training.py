"""Held-out evaluation of the policy during training (the local backend's `eval/*` metrics).

    m = evaluate_policy(rollout, tokenizer, rows, cfg)     # rollout: rl_prm.generate.RolloutClient
        eval/accuracy               greedy accuracy by the verifiable reward
        eval/sampled_accuracy       mean accuracy of trainer.eval_samples samples per problem at
                                    rollout.temperature (fixed seeds: the same draws at every eval)
        eval/response_length, eval/truncated_frac, eval/steps_per_response, eval/n
    rows of a task with a step checker (rl_prm.tasks, e.g. the world), over the sampled solutions:
        eval/trace_accuracy         answer right and every step right
        eval/answer_accuracy        answer right (= eval/sampled_accuracy)
        eval/miracle_rate           answer right, some step wrong (answer = trace + miracle)
    and over the greedy ones: eval/greedy_trace_accuracy, eval/greedy_miracle_rate
"""

from __future__ import annotations

from typing import Any

from rl_prm.data.datasets import prompt_ids
from rl_prm.score.verifiable import verifiable_rewards
from rl_prm.steps import split_steps
from rl_prm.tasks import process_metrics, task_of


def evaluate_policy(rollout: Any, tokenizer: Any, rows: list[dict], cfg: Any) -> dict[str, float]:
    """The eval/* metrics (module doc) of the policy behind ``rollout`` (anything with
    RolloutEngine.generate's signature) on ``rows``."""
    task = task_of(rows)
    ids = [prompt_ids(tokenizer, r, cfg.data.prompt_instruction) for r in rows]
    outs = rollout.generate(ids, n=1, temperature=0.0, top_p=1.0, max_tokens=cfg.rollout.max_tokens)
    acc = verifiable_rewards(rows, [o.text for o in outs])
    lens = [len(o.response_ids) for o in outs]
    m = {"eval/accuracy": sum(acc) / len(acc), "eval/response_length": sum(lens) / len(lens),
         "eval/truncated_frac": sum(o.truncated for o in outs) / len(outs), "eval/n": float(len(outs)),
         "eval/steps_per_response": sum(len(split_steps(o.text)) for o in outs) / len(outs)}
    g = process_metrics(task, [r["problem"] for r in rows], [o.text for o in outs], acc, prefix="eval/greedy_")
    if g:
        m.update({k: v for k, v in g.items() if not k.endswith("answer_accuracy")})  # = eval/accuracy
    n = int(cfg.trainer.eval_samples)
    if n > 0:
        outs = rollout.generate(ids, n=n, temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p,
                                max_tokens=cfg.rollout.max_tokens, seed=2**31 + int(cfg.run.seed))
        s_rows = [rows[o.prompt_index] for o in outs]
        sampled = verifiable_rewards(s_rows, [o.text for o in outs])
        m["eval/sampled_accuracy"] = sum(sampled) / len(sampled)
        m["eval/sampled_steps_per_response"] = sum(len(split_steps(o.text)) for o in outs) / len(outs)
        m.update(process_metrics(task, [r["problem"] for r in s_rows], [o.text for o in outs], sampled))
    return m
