"""rl_prm's vLLM general plugin: RL_PRM_VLLM_BUSY_LOOP_S sets how long vLLM's message-queue readers
busy-wait on CPU."""

import inspect
import json
import os
import subprocess
import sys

SCRIPT = """
import json, zmq
from vllm.plugins import load_general_plugins
load_general_plugins()
import vllm.distributed.device_communicators.shm_broadcast as sb
from vllm.utils.network_utils import get_open_zmq_ipc_path
ctx = zmq.Context()
addr = get_open_zmq_ipc_path()
writer = sb.SpinCondition(is_reader=False, context=ctx, notify_address=addr)
reader = sb.SpinCondition(is_reader=True, context=ctx, notify_address=addr)
print(json.dumps({"patched": getattr(sb.SpinCondition.__init__, "_rl_prm", False), "reader": reader.busy_loop_s}))
"""


def _run(env_value):
    env = dict(os.environ)
    env.pop("RL_PRM_VLLM_BUSY_LOOP_S", None)
    if env_value is not None:
        env["RL_PRM_VLLM_BUSY_LOOP_S"] = env_value
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_vllm_loads_the_plugin_and_readers_sleep_as_set_on_cpu():
    assert _run("0") == {"patched": True, "reader": 0.0}
    assert _run("0.25")["reader"] == 0.25
    assert _run(None) == {"patched": False, "reader": 1}  # by default vLLM's own busy-wait
    assert _run("vllm") == {"patched": False, "reader": 1}


def test_vllm_still_busy_waits_one_second_by_default():
    # the reason for the plugin: if vLLM stops spinning 1 s by default, the plugin can go
    import vllm.distributed.device_communicators.shm_broadcast as sb

    assert inspect.signature(sb.SpinCondition.__init__).parameters["busy_loop_s"].default == 1
