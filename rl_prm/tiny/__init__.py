"""Tiny offline models: a Qwen2-architecture policy and R-PRM judge built without network.

    from rl_prm.tiny import policy_path, judge_path
    policy_dir = policy_path()   # random-init tiny policy (HF + vLLM loadable)
    judge_dir = judge_path()     # tiny judge overfit on synthetic R-PRM critiques: it writes
                                 # "Verification: Is the step correct (Yes/No)? Yes|No"

Both build on first call (deterministic: fixed seeds, a byte-level BPE trained on shipped text)
and are cached under $RL_PRM_CACHE (default ~/.cache/rl_prm)/tiny/<name>-<hash>; a build is
written to a temp dir and renamed into place, so concurrent callers never see half a model.
head_dim is 64 because vLLM's CPU attention rejects 16.
"""

from rl_prm.tiny.build import build_tokenizer, judge_path, policy_path, tiny_cache_dir

__all__ = ["policy_path", "judge_path", "build_tokenizer", "tiny_cache_dir"]
