"""The world run's report: report.json (numbers) and report.md (tables and sentences computed from them).

    data = report_json(results)      # the shape below; every value a fraction in [0, 1]
    text = report_md(results)        # markdown; every comparison sentence comes from a function here

report.json:
    {"judge": {"f1_by_k": {"1": F, "2": F, "4": F, "8": F}, "f1_greedy": F (one greedy critique per step),
               "step_accuracy": {...}, "n_items": N},
     "start": {"trace_accuracy", "answer_accuracy", "miracle_rate", "greedy_accuracy"},   (step-0 eval, mean over seeds)
     "arms": {arm: {"seeds": [...], "step": S, "trace_accuracy": [per seed, last eval], "answer_accuracy": [...],
                    "miracle_rate": [...], "greedy_accuracy": [...]}},
     "comparisons": {...the verdicts as numbers...}, "judge_work": {arm: {prm/* key: mean per step}},
     "timing_s": {...}}
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

from rl_prm.metrics.judge import RATE_COUNT, pooled_rate
from rl_prm.world.compare import ARM_LABELS, JUDGE_ARMS, _mean

# report.json key -> eval metric (sampled solutions, except greedy accuracy)
METRICS = {"trace_accuracy": "eval/trace_accuracy", "answer_accuracy": "eval/answer_accuracy",
           "miracle_rate": "eval/miracle_rate", "greedy_accuracy": "eval/accuracy"}
NAMES = {"trace_accuracy": "trace accuracy", "answer_accuracy": "answer accuracy", "miracle_rate": "miracle rate",
         "greedy_accuracy": "greedy accuracy"}
ANSWER_MARGIN = 0.02  # the goal: R-PRM min-form not below VR-only on answer accuracy by more than this
GREEDY_MARGIN = 0.02  # the goal: greedy accuracy after RL not more than this below the SFT policy's


def pct(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _spread(xs: Sequence[float]) -> str:
    return f"{pct(_mean(xs))} [{pct(min(xs))}, {pct(max(xs))}]"


# --------------------------------------------------------------------------- sentences (pure)


def k_trend(f1_by_k: dict[int, float]) -> str:
    """How F1 moves with K, stated from the numbers: "rises with K at every step", or where it does not."""
    ks = sorted(f1_by_k)
    vals = [f1_by_k[k] for k in ks]
    curve = " < ".join(f"{v:.1f}" for v in vals) if all(b > a for a, b in zip(vals, vals[1:])) else \
        ", ".join(f"K={k}: {v:.1f}" for k, v in zip(ks, vals))
    if len(vals) < 2:
        return f"F1 is {curve} (one K only)."
    if all(b > a for a, b in zip(vals, vals[1:])):
        return f"F1 rises with K at every step ({curve})."
    best = ks[vals.index(max(vals))]
    drops = [f"K={b}" for (a, b), (va, vb) in zip(zip(ks, ks[1:]), zip(vals, vals[1:])) if vb <= va]
    where = f"it peaks at K={best}" if best != ks[-1] else f"it ends highest at K={best}"
    return f"F1 does NOT rise monotonically with K ({curve}): {where}, and does not rise at {', '.join(drops)}."


def compare(a: Sequence[float], b: Sequence[float], name_a: str, name_b: str, metric: str,
            higher_is_better: bool = True) -> tuple[str, dict]:
    """One arm against another on one metric (per-seed values): the difference of the means and
    whether the seeds' ranges are disjoint, in words and numbers."""
    d = _mean(a) - _mean(b)
    better = d > 0 if higher_is_better else d < 0
    disjoint = min(a) > max(b) or max(a) < min(b)
    word = ("better than" if better else "worse than") if d != 0 else "equal to"
    how = ("the seeds' ranges are disjoint" if disjoint else "the seeds' ranges overlap: not a clear difference")
    text = (f"{name_a} vs {name_b} on {metric}: {_spread(a)} vs {_spread(b)}, {100 * d:+.1f} points ({name_a} "
            f"{word} {name_b}; {how}).")
    return text, {"diff": d, "disjoint": disjoint, "better": better}


def recovered(judge: Sequence[float], oracle: Sequence[float], base: Sequence[float], metric: str) -> tuple[str, dict]:
    """Share of the oracle's gain over the baseline that the R-PRM judge recovers (means over seeds)."""
    g_oracle, g_judge = _mean(oracle) - _mean(base), _mean(judge) - _mean(base)
    if g_oracle <= 0:
        return (f"The oracle judge does not beat VR-only on {metric} ({100 * g_oracle:+.1f} points): there is no oracle "
                f"gain for the R-PRM judge to recover (the R-PRM judge: {100 * g_judge:+.1f}).",
                {"oracle_gain": g_oracle, "judge_gain": g_judge, "share": None})
    share = g_judge / g_oracle
    return (f"The R-PRM judge recovers {100 * share:.0f}% of the oracle's {metric} gain over VR-only "
            f"({100 * g_judge:+.1f} of {100 * g_oracle:+.1f} points).",
            {"oracle_gain": g_oracle, "judge_gain": g_judge, "share": share})


def scoring_text(prm: dict) -> str:
    """How the recipe's judge scores a step, in words (reward.prm: k, adaptive_k, adaptive_min_k,
    adaptive_rule, temperature)."""
    k, first = prm["k"], prm.get("adaptive_min_k", prm["k"])
    if not prm.get("adaptive_k") or first >= k:
        how = f"{k} critique{'s' if k > 1 else ''}"
    elif prm.get("adaptive_rule") == "confirm_no":
        how = f"{first} critique{'s' if first > 1 else ''} ({k} where {'it rejects' if first == 1 else 'one rejects'})"
    else:
        how = f"{first} critiques ({k} where they disagree)"
    if not prm["temperature"] and not (prm.get("adaptive_k") and first < k):
        return "1 greedy critique, the step's score its P(Yes)" if k == 1 else f"{how} (greedy), the step's score their P(Yes)"
    return f"{how} sampled at T={prm['temperature']}, the step's score the mean P(Yes)"


def greedy_check(arm_label: str, after: Sequence[float], start: float, margin: float = GREEDY_MARGIN) -> tuple[str, dict]:
    """Greedy accuracy after RL against the SFT policy's (per seed, worst seed decides)."""
    d = [x - start for x in after]
    ok = min(d) >= -margin - 1e-9  # a drop of exactly the margin is within it (0.98 - 1.0 is -0.0200...02)
    text = (f"{arm_label}: greedy accuracy {pct(start)} -> {_spread(after)} ({100 * _mean(d):+.1f} points, worst seed "
            f"{100 * min(d):+.1f}: " + (f"within {100 * margin:.0f} points of the SFT policy)." if ok else
                                        f"MORE than {100 * margin:.0f} points below the SFT policy)."))
    return text, {"diff_mean": _mean(d), "diff_min": min(d), "ok": ok}


# --------------------------------------------------------------------------- report.json / report.md


def arm_numbers(arms: dict) -> dict:
    """Per arm: seeds, last eval step and per-seed last-eval values of METRICS."""
    out = {}
    for arm, a in arms.items():
        row: dict = {"seeds": sorted(a["seeds"])}
        for key, metric in METRICS.items():
            f = a["final"].get(metric)
            if f:
                row["step"] = f["step"]
                row[key] = [float(f["end_per_seed"][s]) for s in row["seeds"] if s in f["end_per_seed"]]
        out[arm] = row
    return out


LATE_EVALS = 3  # a long run's arms are also compared on the mean of their last evals (one eval is noisy)
LONG_RUN = 50   # steps from which a run counts as long


def late_numbers(arms: dict, k: int = LATE_EVALS) -> dict:
    """Per arm of a long run (last eval at step >= LONG_RUN): per seed, the mean of its last k evals of each
    of METRICS but greedy accuracy, and the steps they cover."""
    out = {}
    for arm, a in arms.items():
        row: dict = {"seeds": sorted(a["seeds"])}
        for key, metric in METRICS.items():
            curve = {st: v for st, v in a["curves"].get(metric, {}).items() if st > 0}
            if key == "greedy_accuracy" or not curve or max(curve) < LONG_RUN:
                continue
            last = sorted(curve)[-k:]
            row["steps"] = last
            vals = [[curve[st][s] for st in last if s in curve[st]] for s in row["seeds"]]
            row[key] = [_mean(v) for v in vals if v]  # a seed still running has no eval there yet
        if "steps" in row:
            out[arm] = row
    return out


def start_numbers(arms: dict) -> dict:
    """The SFT policy's step-0 eval (mean over seeds: the seeds differ only in eval sampling seeds)."""
    out = {}
    for key, metric in METRICS.items():
        for a in arms.values():
            c = a["curves"].get(metric, {})
            if 0 in c:
                out[key] = _mean(c[0].values())
                break
    return out


def comparisons(arms: dict) -> tuple[list[str], dict]:
    """Every verdict of the report, as sentences and as numbers."""
    nums, start = arm_numbers(arms), start_numbers(arms)
    lines, data = [], {}

    def have(arm: str, key: str) -> bool:
        return bool(nums.get(arm, {}).get(key))

    for arm, base in (("min_form", "vr_only"), ("gated", "vr_only"), ("oracle", "vr_only"), ("sum", "vr_only"),
                      ("prm_only", "vr_only"), ("gated", "min_form"), ("gated", "prm_only")):
        for key, hib in (("trace_accuracy", True), ("answer_accuracy", True), ("miracle_rate", False)):
            if have(arm, key) and have(base, key):
                t, d = compare(nums[arm][key], nums[base][key], ARM_LABELS[arm], ARM_LABELS[base], NAMES[key], hib)
                lines.append(t)
                data[f"{arm}_vs_{base}/{key}"] = d
    late = late_numbers(arms)
    for arm, base in (("gated", "vr_only"), ("min_form", "vr_only"), ("prm_only", "vr_only"), ("oracle", "vr_only")):
        for key, hib in (("trace_accuracy", True), ("miracle_rate", False)):
            if late.get(arm, {}).get(key) and late.get(base, {}).get(key):
                t, d = compare(late[arm][key], late[base][key], ARM_LABELS[arm], ARM_LABELS[base],
                               f"{NAMES[key]} (mean of the last {LATE_EVALS} evals)", hib)
                lines.append(t)
                data[f"{arm}_vs_{base}/{key}_late"] = d
    work = {arm: a.get("judge_work", {}) for arm, a in arms.items()}
    tokens = {arm: w["prm/critique_tokens"] for arm, w in work.items() if w.get("prm/critique_tokens")}
    if "gated" in tokens and "min_form" in tokens:
        ratio = tokens["gated"] / tokens["min_form"]
        lines.append(f"{ARM_LABELS['gated']} generates {ratio:.2f}x the critique tokens per step of "
                     f"{ARM_LABELS['min_form']} ({tokens['gated']:.0f} vs {tokens['min_form']:.0f}).")
        data["gated_vs_min_form/critique_tokens_ratio"] = ratio
    if have("min_form", "answer_accuracy") and have("vr_only", "answer_accuracy"):
        d = _mean(nums["min_form"]["answer_accuracy"]) - _mean(nums["vr_only"]["answer_accuracy"])
        ok = d >= -ANSWER_MARGIN - 1e-9
        lines.append(f"{ARM_LABELS['min_form']}'s answer accuracy is {100 * d:+.1f} points from VR-only's: "
                     + (f"not more than {100 * ANSWER_MARGIN:.0f} points below." if ok else
                        f"MORE than {100 * ANSWER_MARGIN:.0f} points below."))
        data["min_form_answer_within_margin"] = ok
    if all(have(a, "trace_accuracy") for a in ("min_form", "oracle", "vr_only")):
        t, d = recovered(nums["min_form"]["trace_accuracy"], nums["oracle"]["trace_accuracy"],
                         nums["vr_only"]["trace_accuracy"], "trace accuracy")
        lines.append(t)
        data["oracle_gain_recovered"] = d
    if "greedy_accuracy" in start:
        for arm in nums:
            if have(arm, "greedy_accuracy"):
                t, d = greedy_check(ARM_LABELS.get(arm, arm), nums[arm]["greedy_accuracy"], start["greedy_accuracy"])
                lines.append(t)
                data[f"greedy/{arm}"] = d
    return lines, data


def report_json(results: dict) -> dict:
    """report.json's content (module doc) from results.json's."""
    out: dict = {"timing_s": results.get("timing_s", {}), "load_avg": results.get("load_avg", {})}
    j = results.get("judge", {}).get("processbench")
    if j:
        out["judge"] = {"f1_by_k": {str(k): v / 100 for k, v in j["f1_per_k"].items()}, "n_items": j["n_items"],
                        "f1_greedy": j["greedy"]["f1"] / 100 if "greedy" in j else None,
                        "step_accuracy": {str(k): {"correct_steps_judged_correct": a["correct_steps_yes"] / 100,
                                                   "error_steps_judged_wrong": a["error_steps_no"] / 100}
                                          for k, a in j.get("step_accuracy", {}).items()}}
    rl = results.get("rl")
    if rl:
        out["start"] = start_numbers(rl["arms"])
        out["arms"] = arm_numbers(rl["arms"])
        out["comparisons"] = comparisons(rl["arms"])[1]
        out["late"] = late_numbers(rl["arms"])
        out["judge_work"] = {arm: a["judge_work"] for arm, a in rl["arms"].items() if a.get("judge_work")}
        out["judge_truth"] = judge_truth_numbers(rl["arms"])
        if rl.get("monitors"):
            out["monitors"] = rl["monitors"]
    return out


TRUTH_KEYS = {"judge/false_accept_rate": "first wrong steps passed", "judge/flawed_passed_rate":
              "responses with a wrong step passed whole", "judge/false_reject_rate": "right steps flagged"}


def judge_truth_numbers(arms: dict, window: int = 10) -> dict:
    """Per judged arm and TRUTH_KEYS key: the rate pooled over the first and over the last `window` training
    steps of all seeds (rl_prm.metrics.judge.pooled_rate: weighted by the steps' counts), and those steps."""
    out = {}
    for arm, a in arms.items():
        row = {}
        for key in TRUTH_KEYS:
            counts = {s: v for s, v in a["curves"].get(RATE_COUNT[key], {}).items() if s > 0}
            if not counts:
                continue
            rates = a["curves"].get(key, {})
            steps = sorted(counts)
            first, last = steps[:window], steps[-window:]
            metrics = lambda window_steps: [  # noqa: E731  one metrics row per (step, seed)
                {RATE_COUNT[key]: n, **({key: rates[s][seed]} if seed in rates.get(s, {}) else {})}
                for s in window_steps for seed, n in counts[s].items()]
            row[key] = {"first": pooled_rate(metrics(first), key), "last": pooled_rate(metrics(last), key),
                        "first_steps": [first[0], first[-1]], "last_steps": [last[0], last[-1]]}
        if row:
            out[arm] = row
    return out


def monitor_lines(mon: dict) -> list[str]:
    """The report's section on the hack/* monitors against the judge's false-accept rate (rl_prm.world.monitors)."""
    lines = ["", "### Do the reward-hacking monitors see the judge being fooled?", "",
             "Each hack/* monitor (its mean over the last 10 steps) against the judge's false-accept rate pooled "
             "over the last 10 steps (first wrong steps passed / first wrong steps scored, by the world's checker), "
             "over the judged runs; lag > 0: the monitor moves first (rl_prm.world.monitors).", "",
             "| monitor | arm | runs | corr (mean [min, max]) | best lag (steps) | corr at best lag |",
             "|---|---|---|---|---|---|"]
    f = lambda x, p=2: "n/a" if x is None else f"{x:+.{p}f}"  # noqa: E731
    best = lambda per: max(t["corr"] for t in per.values())  # noqa: E731
    for key, per in sorted(mon["table"].items(), key=lambda kv: -best(kv[1])):
        for arm, t in per.items():
            lines.append(f"| {key} | {ARM_LABELS.get(arm, arm)} | {t['runs']} | {f(t['corr'])} [{f(t['corr_min'])}, "
                         f"{f(t['corr_max'])}] | {f(t['best_lag'], 1)} | {f(t['corr_at_best_lag'])} |")
    quiet = sorted({k for k in mon.get("monitors", [])} - set(mon["table"]))
    if quiet:
        lines += ["", "Constant (or never defined) in every judged run, so they track nothing here: " + ", ".join(quiet) + "."]
    lines += ["", "Rules the trainers apply (rl_prm.metrics.watch.RULES): " + "; ".join(
        f"{r['key']}: 10-step mean {'> ' + format(r['above'], 'g') if r.get('above') is not None else ''}"
        f"{' or ' if r.get('above') is not None and r.get('rise') is not None else ''}"
        f"{'+' + format(r['rise'], 'g') + ' over the run' + chr(39) + 's first 10 steps' if r.get('rise') is not None else ''}"
        for r in mon.get("rules", [])) + ". Per judged run: the step the pooled false-accept rate first rose "
        "0.15 above its first 10-step value, and the first warning:", "",
        "| run | false accepts, first 10 steps -> last 10 (max) | rose at step | first warning | warned within 20 steps |",
        "|---|---|---|---|---|"]
    for name, r in mon["rises"].items():
        within = "no rise" if r["rise_step"] is None else ("yes" if r["warned_within_20"] else "NO")
        lines.append(f"| {name} | {pct(r['truth_first'])}% -> {pct(r['truth_last'])}% ({pct(r['truth_max'])}%) | "
                     f"{r['rise_step'] or '-'} | {r['warned_step'] or '-'} | {within} |")
    if any(r["arm"] == "gated" for r in mon["rises"].values()):
        lines += ["", "An answer-gated run judges right answers only, so no judged response has a wrong answer: "
                  "hack/prm_ok_given_vr_wrong is undefined there and the rule cannot fire; its judge misses show "
                  "only against a step checker (judge/*)."]
    return lines + ["", "![monitors against the truth](monitors.png)"]


def judge_line(jb: dict) -> str:
    """The report's line on how the judge was built (its build.json)."""
    jc = jb.get("config", {})
    sft = jb.get("sft", jb)
    return (f"- judge: fine-tuned from the policy on {sft.get('config', {}).get('steps')} steps of teacher critiques "
            f"(SFT, built in {sft.get('build_s')} s)" + (
                f", then DPO on {jb.get('dpo_pairs', {}).get('pairs')} (right-verdict, wrong-verdict) pairs of its "
                f"own critiques ({jc.get('dpo', {}).get('steps')} steps; the SFT judge's sampled critiques were "
                f"{pct(jb.get('dpo_pairs', {}).get('critique_accuracy'))}% right), built in {jb.get('build_s')} s"
                if "dpo_pairs" in jb else ""))


def report_md(results: dict) -> str:
    """The markdown report of a world run (results.json's content)."""
    tm = results["timing_s"]
    pb, jb = results["policy"]["build"], results.get("judge", {}).get("build")
    pc = pb.get("config", {})
    lines = ["# Miniature R-PRM world: right reasoning, not just right answers", "",
             f"Wall time {tm['total']:.0f} s on this machine: " + ", ".join(f"{k} {v:.0f} s" for k, v in tm.items()
                                                                          if k != "total")
             + " (a cached model costs ~0 s; its build time is below); 1-minute load average at the end of each "
             "stage: " + ", ".join(f"{k} {v}" for k, v in results.get("load_avg", {}).items())
             + f" (on {os.cpu_count()} cores).", "",
             "## Policy and judge", "",
             f"- policy: SFT from scratch, {pc.get('steps')} steps; SFT mix {pct(pc.get('miracle_fraction'))}% miracle "
             f"solutions (a wrong step, the right answer), {pct(pc.get('flawed_fraction'))}% flawed (wrong answer), the "
             f"rest gold; built in {pb.get('build_s')} s. At build (n={pb.get('n')}, 1 sample): greedy "
             f"{pct(pb.get('greedy_acc'))}%, sampled T=1 {pct(pb.get('sampled_acc'))}% (trace "
             f"{pct(pb.get('sampled_trace_accuracy'))}%, miracles {pct(pb.get('sampled_miracle_rate'))}%)"]
    if jb is None:
        lines.append("- judge: not used (no arm of this run scores with it, and its evaluation was skipped)")
    else:
        lines.append(judge_line(jb))
    j = results.get("judge", {}).get("processbench")
    if j:
        lines += ["", f"Mini-ProcessBench ({j['n_items']} items, rl_prm.eval; critiques sampled at T={j.get('temperature')}, "
                  "threshold 0.5" + ("; from the shipped judge's build card, `--judge-eval` measures it again"
                                     if j.get("from_card") else "") + "):", "", "| K | F1 | error-sample acc | correct-sample acc |", "|---|---|---|---|"]
        for k, f1 in j["f1_per_k"].items():
            sp = next(iter(j["per_k"][str(k)].values()))
            lines.append(f"| {k} | {f1} | {sp.get('error_acc', float('nan')):.1f} | {sp.get('correct_acc', float('nan')):.1f} |")
        lines += ["", k_trend({int(k): v for k, v in j["f1_per_k"].items()})]
        if "greedy" in j:
            sp = next(iter(j["greedy"]["splits"].values()))
            lines += ["", f"One greedy critique per step (temperature 0): F1 {j['greedy']['f1']} (error-sample acc "
                      f"{sp.get('error_acc', float('nan')):.1f}, correct-sample acc {sp.get('correct_acc', float('nan')):.1f})."]
        acc = j.get("step_accuracy")
        if acc:
            lines += ["", "Step by step (what the RL reward sees; judged correct = mean P(Yes) over K critiques above 0.5):",
                      "", "| K | correct steps judged correct | first-error steps judged wrong |", "|---|---|---|"]
            lines += [f"| {k} | {a['correct_steps_yes']}% of {a['n_correct_steps']} | {a['error_steps_no']}% of "
                      f"{a['n_error_steps']} |" for k, a in acc.items()]
        lines += ["", "![judge F1 vs K](judge_f1_vs_k.png)"]
    rl = results.get("rl")
    if rl:
        arms = rl["arms"]
        seeds = sorted({s for a in arms.values() for s in a["seeds"]})
        start = start_numbers(arms)
        lines += ["", "## RL comparison", "",
                  f"Recipe `{rl['recipe'].split('/')[-1]}` {' '.join(rl['overrides'])}; seeds {seeds}; every arm starts "
                  "from the SFT policy with the same data order, sampling seeds, optimiser and budget; only the "
                  f"reward differs. Metrics on held-out world problems, {rl.get('eval_samples', '?')} samples per problem "
                  "at T=1 (every step recomputed by the world's checker): trace = answer right and every step right; "
                  "miracle = answer right, some step wrong (answer = trace + miracle). "
                  + (f"The R-PRM arms score a step with {scoring_text(rl['judge_scoring'])}. "
                     if rl.get("judge_scoring") and any(a in arms for a in JUDGE_ARMS) else "")
                  + "Step 0 = the SFT policy: "
                  + ", ".join(f"{NAMES[k]} {pct(v)}%" for k, v in start.items()) + ".", ""]
        lines += ["| arm | " + " | ".join(NAMES[k] for k in METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
        for arm, row in arm_numbers(arms).items():
            lines.append(f"| {ARM_LABELS.get(arm, arm)} (step {row.get('step')}) | "
                         + " | ".join(_spread(row[k]) if row.get(k) else "n/a" for k in METRICS) + " |")
        lines += ["", "Mean over seeds [min, max] at the last eval, in %."]
        late = late_numbers(arms)
        if late:
            late_keys = [k for k in METRICS if k != "greedy_accuracy"]
            lines += ["", f"A long run: the mean of each seed's last {LATE_EVALS} evals (steps "
                      f"{', '.join(map(str, next(iter(late.values()))['steps']))}), mean over seeds [min, max], in %:", "",
                      "| arm | " + " | ".join(NAMES[k] for k in late_keys) + " |", "|---" * (len(late_keys) + 1) + "|"]
            for arm, row in late.items():
                lines.append(f"| {ARM_LABELS.get(arm, arm)} | " + " | ".join(
                    _spread(row[k]) if row.get(k) else "n/a" for k in late_keys) + " |")
        lines += ["", "Per seed (last eval):", ""]
        for arm, row in arm_numbers(arms).items():
            lines.append(f"- {ARM_LABELS.get(arm, arm)}: " + "; ".join(
                f"s{s}: trace {pct(t)}, answer {pct(a)}, miracle {pct(m)}, greedy {pct(g)}" for s, t, a, m, g in
                zip(row["seeds"], *(row.get(k, [None] * len(row["seeds"])) for k in METRICS))))
        work = {arm: a["judge_work"] for arm, a in arms.items()
                if arm in JUDGE_ARMS and a.get("judge_work", {}).get("prm/judge_prompts")}
        if work:
            lines += ["", "The R-PRM judge's work per training step (mean over steps and seeds; prm/* metrics):", "",
                      "| arm | judge prompts | distinct (judged) | dedup | gated responses | critiques | critique tokens "
                      "| score s/step |", "|---|---|---|---|---|---|---|---|"]
            for arm, w in work.items():
                lines.append(f"| {ARM_LABELS.get(arm, arm)} | {w.get('prm/judge_prompts', 0):.1f} | "
                             f"{w.get('prm/judge_prompts_distinct', 0):.1f} | {100 * w.get('prm/dedup_frac', 0):.1f}% | "
                             f"{w.get('prm/gated_responses', 0):.1f} | {w.get('prm/critiques', 0):.1f} | "
                             f"{w.get('prm/critique_tokens', 0):.0f} | {w.get('timing/score', 0):.2f} |")
        truth = judge_truth_numbers(arms)
        if truth:
            lines += ["", "The judge on the training rollouts against the world's checker (judge/* metrics, free: no "
                      "extra judge call; over the first and the last 10 steps of all seeds together):",
                      "", "| arm | " + " | ".join(TRUTH_KEYS.values()) + " |", "|---" * (len(TRUTH_KEYS) + 1) + "|"]
            for arm, row in truth.items():
                lines.append(f"| {ARM_LABELS.get(arm, arm)} | " + " | ".join(
                    f"{pct(row[k]['first'])}% -> {pct(row[k]['last'])}%" if k in row else "n/a" for k in TRUTH_KEYS) + " |")
            lines += ["", "![the judge against the checker](judge_truth.png)"]
        if rl.get("monitors"):
            lines += monitor_lines(rl["monitors"])
        lines += ["", "### What the numbers say", ""] + [f"- {t}" for t in comparisons(arms)[0]]
        lines += ["", "![process metrics vs step](process_vs_step.png)", ""]
        for arm, a in arms.items():
            c = a["curves"].get("hack/steps_per_response", {})
            if c:
                first, last = min(c), max(c)
                lines.append(f"- {ARM_LABELS.get(arm, arm)}: steps per training response {_mean(c[first].values()):.2f} "
                             f"(step {first}) -> {_mean(c[last].values()):.2f} (step {last}); RL time per run "
                             f"{a['train_s']:.0f} s")
    return "\n".join(lines) + "\n"
