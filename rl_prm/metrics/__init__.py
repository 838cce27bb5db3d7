"""Training metrics, one definition for both backends: per-response rows summed per step
(rl_prm.metrics.response), PRM step scores, reward-hacking monitors and their warnings (watch), the
judge's work and its errors against a task's step checker, RL basics and spike detection.

Pure Python + numpy (no trainer, torch or verl imports): the one-node loop logs them through
`rl_prm.tracking.Tracker`, the verl reward manager returns each response's row in `reward_extra_info`
and rl_prm's verl trainer sums them with the same function.

Key names (W&B panels group on the part before "/"):
    prm/...        step scores of the frozen R-PRM (P(Yes) of the verdict) and the judge's work
    hack/...       reward-hacking monitors used by PURE (Cheng et al. 2025)
    judge/...      the judge's verdicts on the step's own rollouts against the task's step checker
    process/...    trace / answer / miracle rates of the step's rollouts (a task with a checker)
    response_length/..., reward/..., perf/...   RL basics (verl's names where verl has one)

Every function returns only keys it has data for (an empty batch gives {}), never NaN, so a
missing panel means "no data" rather than a NaN-poisoned average.
"""

from rl_prm.metrics.hacking import (HACK_ROW_KEYS, REFLECTION_PHRASES, hack_row, hack_rows_metrics, hacking_monitors,
                                    ngram_repetition, reflection_count)
from rl_prm.metrics.judge import (JUDGE_COST, PROCESS_FLAGS, TRUTH_COUNTS, judge_cost_metrics, judge_truth_metrics,
                                  no_judge_cost, process_flags, truth_row)
from rl_prm.metrics.prm import (PRM_ROW_KEYS, prm_histograms, prm_metrics, prm_position_metrics, prm_row,
                                prm_rows_metrics, prm_verdicts)
from rl_prm.metrics.response import response_metrics, response_row
from rl_prm.metrics.rl import SpikeDetector, group_metrics, length_metrics, rl_metrics, stats, throughput_metrics
from rl_prm.metrics.watch import RULES, HackWatch, WatchRule

__all__ = ["HACK_ROW_KEYS", "HackWatch", "JUDGE_COST", "RULES", "WatchRule", "PRM_ROW_KEYS", "PROCESS_FLAGS", "REFLECTION_PHRASES", "SpikeDetector",
           "TRUTH_COUNTS", "group_metrics", "hack_row", "hack_rows_metrics", "hacking_monitors", "judge_cost_metrics",
           "judge_truth_metrics", "length_metrics", "ngram_repetition", "no_judge_cost", "prm_histograms",
           "prm_metrics", "prm_position_metrics", "prm_row", "prm_rows_metrics", "prm_verdicts", "process_flags",
           "reflection_count", "response_metrics", "response_row", "rl_metrics", "stats", "throughput_metrics",
           "truth_row"]
