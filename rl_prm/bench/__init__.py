"""Benchmarks: `rl-prm bench NAME`. Each module has main(argv)."""
