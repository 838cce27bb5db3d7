"""Stage 2, score: the R-PRM reward worker.

For every step of every response: K critiques with the exact R-PRM prompt (rl_prm.score.prompt),
P(Yes) read at the verdict position, step score = mean over K.

    from rl_prm.score import RPRMScorer, ScoreConfig
    scorer = RPRMScorer.from_path(judge_dir, ScoreConfig(k=4))
    [item] = scorer.score([{"question": q, "steps": ["...", "..."]}])
    item.status, item.step_scores
"""

from rl_prm.score.scorer import ItemScore, RPRMScorer, ScoreConfig, StepScore

__all__ = ["ItemScore", "RPRMScorer", "ScoreConfig", "StepScore"]
