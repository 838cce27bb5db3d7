"""HTTPJudgeEngine against a real OpenAI-compatible server of the tiny judge on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def judge_server(tiny_judge_dir, tmp_path_factory):
    import requests

    port = _free_port()
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w")
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_judge_dir),
         "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager",
         "--max-model-len", "2048", "--seed", "0"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"judge server exited with {proc.returncode}; log: {log.name}")
            try:
                if requests.get(url + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.time() > deadline:
                pytest.fail(f"judge server not healthy after 240 s; log: {log.name}")
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)
        log.close()


@pytest.mark.slow
def test_http_engine_scores_and_single_pass_matches_second_pass(judge_server, tiny_judge_dir, judge_tokenizer):
    from rl_prm.score.engines import GenParams, HTTPJudgeEngine, p_yes
    from rl_prm.score.prompt import VERDICT_QUESTION, judge_prompt
    from rl_prm.score.scorer import RPRMScorer, ScoreConfig, _boundary

    eng = HTTPJudgeEngine(judge_server, str(tiny_judge_dir))
    assert eng.max_model_len == 2048
    q, steps = "Ann has 2 pens and buys 3 more. How many pens?", ["Ann has 2 pens.", "2 + 3 = 5.", "The answer is 5."]
    ids = judge_tokenizer.encode(judge_prompt(judge_tokenizer, q, steps, 1), add_special_tokens=False)
    [samples] = eng.generate([ids], [3], [7], GenParams(0.95, 0.95, 256, []))
    assert len(samples) == 3
    checked = 0
    for s in samples:
        assert judge_tokenizer.decode(s.token_ids, skip_special_tokens=True) == s.text
        assert len(s.verdict_logprobs) == len(s.token_ids)
        cut = s.text.find(VERDICT_QUESTION)
        if cut < 0:
            continue
        p = _boundary(judge_tokenizer, s.token_ids, s.text[: cut + len(VERDICT_QUESTION)])
        single = p_yes(s.verdict_logprobs[p + 1])
        [pair] = eng.score_next([ids + list(s.token_ids[: p + 1])])
        assert single == pytest.approx(p_yes(pair), abs=1e-4)
        checked += 1
    assert checked >= 1

    res = RPRMScorer(eng, ScoreConfig(k=2, max_critique_tokens=256)).score(
        [{"question": q, "steps": steps}, {"question": q, "steps": []}])
    assert [r.status for r in res] == ["ok", "no_steps"]
    assert len(res[0].step_scores) == 3 and all(0 <= x <= 1 for x in res[0].step_scores)
    assert all(st.n_samples == 2 and len(st.p_yes) == 2 for st in res[0].steps)
    assert res[0].generated_tokens > 0
