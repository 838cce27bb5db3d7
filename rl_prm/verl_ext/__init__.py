"""verl-specific glue: the code that runs inside verl's processes (registered with verl through
rl_prm.verl_plugin) or reads verl's config schema. Outside this package only rl_prm.update imports
verl, inside its functions (verl's policy loss, KL and aggregation for the local learner)."""
