"""Judge and policy evaluation (issue #6).

    metrics.py       pure metric functions (ProcessBench F1, PRMBench P/R/F1, pass@k, maj@k, Best-of-N)
    scoring.py       score sources: a live R-PRM scorer or a precomputed JSONL file
    processbench.py  ProcessBench items (scored prefix), scoring, per-K results, F1-vs-K plot
    prmbench.py      PRMBench items (harness-compatible, with the added all-correct items) and results
    math_eval.py     policy sampling, grading, pass@k / maj@k / Best-of-N
    search.py        PRM-guided greedy step search
    io.py            run directories (no mixing of runs), atomic writes, score files

CLI: `rl-prm eval {processbench,prmbench,math} --help` (rl_prm/commands/eval.py).
"""
