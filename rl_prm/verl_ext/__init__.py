"""verl-specific glue (the only place besides rl_prm.verl_plugin that imports verl)."""
