"""verl plugin entry point (pyproject: [project.entry-points."verl.plugins"] rl_prm = ...).

verl imports this module on `import verl` in every process (also when listed in
VERL_USE_EXTERNAL_MODULES). Each line of PLUGIN_MODULES is imported for its registration side
effect. It must never break `import verl` nor a process without verl: failures are logged and
recorded in FAILED, never raised.

To add a registration (e.g. the R-PRM reward manager), append its module to PLUGIN_MODULES.
"""

from __future__ import annotations

import importlib
import logging

PLUGIN_MODULES: list[str] = [
    "rl_prm.verl_ext.cpu_platform",  # verl platform "cpu" (VERL_PLATFORM=cpu) + CPU workarounds; first: before any get_platform() (issue #13)
    "rl_prm.verl_ext.estimators",  # advantage estimators rprm_rloo, rprm_grpo (issue #3)
    "rl_prm.verl_ext.reward_manager",  # reward manager `rprm` (R-PRM steps + verifiable -> rm_scores rows) (issue #5)
    "rl_prm.verl_ext.trainer",  # v1 trainer `rprm_sync` (verl's sync trainer + rprm/* metrics), on v1's import (issue #13)
]

LOADED: list[str] = []
FAILED: dict[str, str] = {}

_log = logging.getLogger(__name__)


def load() -> list[str]:
    """Import every module of PLUGIN_MODULES once; return the ones that loaded."""
    for name in PLUGIN_MODULES:
        if name in LOADED:
            continue
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - a plugin must not crash the host process
            FAILED[name] = f"{type(e).__name__}: {e}"
            quiet = isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] == "verl"
            (_log.debug if quiet else _log.warning)("rl_prm verl plugin: could not import %s (%s)", name, FAILED[name])
        else:
            LOADED.append(name)
            FAILED.pop(name, None)
    return list(LOADED)


load()
