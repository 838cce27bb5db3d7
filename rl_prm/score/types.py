"""The scorer's options and results (rl_prm.score.scorer).

`ScoringOptions` holds every scoring knob once, with its default and help; the recipe section
`reward.prm` extends it (rl_prm.config.recipe.PRMConfig), and the scorer's `ScoreConfig` adds the seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any, Optional

from rl_prm.schema import knob

ADAPTIVE_RULES = ("disagree", "confirm_no")  # rl_prm.score.scorer.needs_more


@dataclass
class ScoringOptions:
    """R-PRM step scoring: K critiques per step with the R-PRM prompt, P(Yes) of the verdict, mean over K."""

    k: int = knob(4, "critiques sampled per step (R-PRM evaluates with K=10; fewer keeps RL affordable)", gt=0)
    temperature: float = knob(0.95, "judge sampling temperature (R-PRM: 0.95)", ge=0)
    top_p: float = knob(0.95, "judge nucleus sampling (R-PRM: 0.95)", gt=0, le=1)
    max_critique_tokens: int = knob(1024, "max tokens per critique", gt=0)
    fallback_score: float = knob(0.5, "score of a step the judge could not score (counted: prm/steps_fallback)",
                                 ge=0, le=1)
    early_reject_threshold: Optional[float] = knob(
        None, "score a solution's steps in order and stop after a step scores below this (later steps get its "
        "score); null = off", ge=0, le=1)
    early_reject_lookahead: int = knob(
        0, "early rejection: also score this many following steps at the same time (scores unchanged: steps "
        "after a rejected one are dropped; more judge tokens, fewer rounds one after another)", ge=0)
    adaptive_k: bool = knob(False, "sample adaptive_min_k critiques first and the rest only when adaptive_rule asks")
    adaptive_min_k: int = knob(2, "adaptive K: critiques sampled first", gt=0)
    adaptive_margin: float = knob(0.0, "adaptive K: the first verdicts agree only if all P(Yes) >= 0.5+m or all < 0.5-m",
                                  ge=0, le=0.5)
    adaptive_rule: str = knob("disagree", "adaptive K: when to sample the rest: disagree (the first verdicts differ) | "
                              "confirm_no (unless all first verdicts are Yes: a No is checked by more critiques)",
                              choices=ADAPTIVE_RULES)
    max_prompt_tokens: Optional[int] = knob(None, "longest judge prompt scored (null: judge context - max_critique_tokens)",
                                            gt=0)
    keep_critiques: int = knob(1, "critiques kept per step in the results (for logging)", ge=0)
    exact_tokenization: bool = knob(True, "re-score with a second pass a critique whose tokens differ from the "
                                    "reference protocol's retokenization")
    stop_at_verdict: bool = knob(True, "stop generating at the verdict (single pass: right after the verdict token; "
                                 "else at the verdict question)")
    single_pass: bool = knob(False, "read P(Yes) at the verdict position of the generation itself (the engine returns "
                             "the verdict tokens' logprobs at every position); false: a one-token second pass over "
                             "prompt + critique, as the reference protocol, prefix-cached (same P(Yes), faster on vLLM: "
                             "docs/performance.md)")


@dataclass
class ScoreConfig(ScoringOptions):
    seed: Optional[int] = 0  # base of the content-derived critique seeds (the run seed)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"ScoreConfig.k must be >= 1, got {self.k}")
        if self.adaptive_k and not 1 <= self.adaptive_min_k <= self.k:
            raise ValueError(f"ScoreConfig.adaptive_min_k must be in [1, k={self.k}], got {self.adaptive_min_k}")
        if self.adaptive_rule not in ADAPTIVE_RULES:
            raise ValueError(f"ScoreConfig.adaptive_rule must be one of {ADAPTIVE_RULES}, got {self.adaptive_rule!r}")
        if self.max_critique_tokens < 1:
            raise ValueError(f"ScoreConfig.max_critique_tokens must be >= 1, got {self.max_critique_tokens}")

    @classmethod
    def from_options(cls, options: Any, seed: Optional[int] = 0) -> "ScoreConfig":
        """From any mapping/object with the ScoringOptions fields (e.g. the recipe's reward.prm)."""
        get = options.get if hasattr(options, "get") else lambda k, d=None: getattr(options, k, d)
        return cls(**{f.name: get(f.name) for f in dataclasses.fields(ScoringOptions)}, seed=seed)


@dataclass
class StepScore:
    score: float | None  # mean P(Yes) over samples; None when not scored (early rejection / too long)
    p_yes: list[float]  # per-sample P(Yes) (failed samples left out)
    n_samples: int  # critiques sampled
    n_fallback: int  # samples whose critique lacked the verdict (scored by the fallback question)
    flag: str | None  # None | "all_failed" | "not_scored" | "too_long"
    critiques: list[str]
    n_second_pass: int = 0  # samples scored by a second one-token pass (incl. the fallbacks)
    n_failed: int = 0  # samples with no P(Yes) at all
    shared: bool = False  # the verdict of the same judge prompt judged for another response (rl_prm.score.memo)


@dataclass
class ItemScore:
    status: str  # "ok" | "no_steps" | "empty_step" | "too_long" | "bad_input" | "error"
    steps: list[StepScore]
    error: str | None
    generated_tokens: int  # judge tokens generated (critiques)
    prompt_tokens: int  # judge prompt tokens processed (incl. second passes), before prefix caching
    seconds: float  # this item's share of its batch's wall time
    cached_prompt_tokens: int = 0  # of prompt_tokens, served from the engine's prefix cache (when reported)
    judged_steps: int = 0  # steps whose judge prompt this call sent to the engine
    shared_steps: int = 0  # steps whose judge prompt was already judged (or being judged) for another response

    @property
    def step_scores(self) -> list[float | None]:
        return [s.score for s in self.steps]

    def training_scores(self, n_steps: int, fallback: float) -> tuple[list[float], int]:
        """`n_steps` scores for training, the same rule on both backends (rl_prm.credit.batch):
        early-rejected steps get the rejecting step's score; steps the judge could not score (too
        long, engine error, no verdict in any critique, missing) get `fallback`.
        Returns (scores, number of steps that got the fallback)."""
        filled = self.filled_step_scores()[:n_steps]
        filled += [None] * (n_steps - len(filled))
        n_fallback = sum(s is None for s in filled) + sum(st.flag == "all_failed" for st in self.steps[:n_steps])
        return [fallback if s is None else float(s) for s in filled], n_fallback

    def filled_step_scores(self) -> list[float | None]:
        """Step scores with not-scored steps (early rejection) given the rejecting step's score."""
        out: list[float | None] = []
        last: float | None = None
        for s in self.steps:
            if s.flag == "not_scored":
                out.append(last)
            else:
                out.append(s.score)
                last = s.score if s.score is not None else last
        return out

    def judge_cost(self) -> dict[str, float]:
        """This response's judge work, the row both backends sum per step (rl_prm.metrics.judge_cost_metrics);
        a judge prompt shared with another response is counted once, for the response that judged it."""
        return {"judge_prompts": float(self.judged_steps + self.shared_steps),
                "judge_prompts_distinct": float(self.judged_steps),
                "judge_critiques": float(sum(s.n_samples for s in self.steps if not s.shared)),
                "judge_critique_tokens": float(self.generated_tokens),
                "judge_prompt_tokens": float(self.prompt_tokens - self.cached_prompt_tokens),
                "judge_seconds": float(self.seconds), "judge_gated": 0.0}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["step_scores"] = self.step_scores
        return d


