"""rl-prm: RL for math reasoning with a frozen generative process reward model (R-PRM).

Pipeline stages, one module each:
  rl_prm.generate  - policy rollouts on vLLM
  rl_prm.score     - the R-PRM reward worker (K critiques per step, mean P(Yes))
  rl_prm.credit    - step scores -> token rewards / advantages (pure torch)
  rl_prm.update    - the policy learner
Backends: rl_prm.backends.local (one node, Ray actors) and rl_prm.verl_plugin (verl).
"""

__version__ = "0.1.0"
