"""The local backend's private Ray cluster keeps subprocess exit codes true in the driver."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, subprocess, sys
    import ray
    def rc():
        return subprocess.run([sys.executable, "-c", "raise SystemExit(3)"]).returncode
    if sys.argv[1] == "ours":
        from rl_prm.backends.engines import ray_init
        ray_init()
    else:  # Ray alone, with the subreaper flag ray_init sets
        os.environ["RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper"] = "true"
        ray.init(include_dashboard=False, num_cpus=2, object_store_memory=80 * 1024**2, logging_level="ERROR")
    print("RC", rc())
    ray.shutdown()
""")


def _child_rc(mode: str) -> int:
    r = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=180)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RC ")]
    assert r.returncode == 0 and lines, r.stdout + r.stderr
    return int(lines[-1].split()[1])


def test_ray_init_keeps_child_exit_codes():
    # Ray alone loses them (SIGCHLD ignored): if this starts reading 3, the reset in ray_init can go
    assert _child_rc("ray") == 0
    assert _child_rc("ours") == 3
