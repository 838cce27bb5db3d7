"""Where the world judge goes wrong: each sampled critique set against the teacher critique of the same step.

    python -m rl_prm.world.judge_errors [--sft]
    r = diagnose_judge(judge_dir, n=100)    # r["misjudged"][kind] = {section: count}, r["examples"]

The teacher critique (rl_prm.world.teacher.critique) is a checklist: one section per check, each ending in
its decision. A sampled critique that reaches the wrong verdict departs from the teacher's somewhere; the
first section whose text differs (rl_prm.world.teacher.first_divergence) names the check the judge failed (a
miscopied previous amount, a misread question, a wrong reverse calculation, or a conclusion that does not
follow from its checks).
"""

from __future__ import annotations

import json
import sys
from collections import Counter

from rl_prm.score.scorer import RPRMScorer, ScoreConfig
from rl_prm.world.judge import judge_path, sft_judge_path
from rl_prm.world.tasks import eval_items, processbench
from rl_prm.world.teacher import first_divergence


def diagnose_judge(path, n: int = 100, seed: int = 0, temperature: float = 0.6, threshold: float = 0.5,
                   max_critique_tokens: int = 224, kv_cache_gib: float = 0.25, n_examples: int = 3) -> dict:
    """One critique (K=1) per step of ``n`` mini-ProcessBench items up to the first error; for the
    steps whose P(Yes) lands on the wrong side of ``threshold``: where the critique first departs from
    the teacher's, counted per kind of step ("correct step" / "first-error <error_kind>"), with a few
    example critiques. The engine is stopped before returning."""
    records = processbench("test", n, seed=seed)
    items = eval_items(records)
    scorer = RPRMScorer.from_path(path, ScoreConfig(k=1, temperature=temperature, top_p=1.0, seed=seed,
                                                    max_critique_tokens=max_critique_tokens, keep_critiques=1),
                                  max_model_len=2048, kv_cache_gib=kv_cache_gib)
    try:
        res = scorer.score([{"question": it["question"], "steps": list(it["steps"])} for it in items])
    finally:
        scorer.engine.shutdown()
    misjudged: dict[str, Counter] = {}
    judged: Counter = Counter()
    examples: list[dict] = []
    for rec, it, r in zip(records, items, res):
        for i, st in enumerate(r.steps):
            correct = it["label"] == -1 or i < it["label"]
            kind = "correct step" if correct else f"first-error {rec['error_kind']}"
            judged[kind] += 1
            if st.score is None or not st.critiques or (st.score > threshold) == correct:
                continue
            where = first_divergence(it["question"], it["steps"], i, correct, st.critiques[0]) or "verdict only"
            misjudged.setdefault(kind, Counter())[where] += 1
            if len(examples) < n_examples and where != "format":
                examples.append({"kind": kind, "where": where, "step": it["steps"][i], "critique": st.critiques[0]})
    return {"judged": dict(judged), "misjudged": {k: dict(v.most_common()) for k, v in misjudged.items()},
            "examples": examples}


if __name__ == "__main__":
    d = sft_judge_path() if "--sft" in sys.argv else judge_path()
    print(json.dumps(diagnose_judge(d), indent=1))
