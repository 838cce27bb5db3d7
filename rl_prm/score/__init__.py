"""Stage 2, score: the R-PRM reward worker.

For every step of every response: K critiques with the exact R-PRM prompt (rl_prm.score.prompt),
P(Yes) read at the verdict position, step score = mean over K.
"""
