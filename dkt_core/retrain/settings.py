"""Settings of the retraining steps, from the environment (nothing hard-coded, no secrets)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEPLOY_MODES = ("swarm", "none")


@dataclass(frozen=True)
class RetrainSettings:
    # Users whose stable hash bucket is below this never train: the fixed hold-out set of the gate.
    # Changing it (or the salt) changes the hold-out, so champion and challenger metrics stop being
    # comparable: it is an environment setting, not a per-run parameter.
    holdout_fraction: float = 0.2
    holdout_salt: str = "holdout"
    gate_tolerance: float = 0.002  # promote if challenger AUC >= champion AUC - tolerance
    deploy: str = "swarm"  # "none": promotion = package + champion alias (machines without Docker)
    cache_dir: Path = Path(".dkt/cache/retrain")  # local copies of immutable S3 objects
    bootstrap: int = 50  # user-bootstrap replicates for the hold-out AUC intervals

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"DKT_HOLDOUT_FRACTION must be in (0, 1), got {self.holdout_fraction}")
        if self.gate_tolerance < 0:
            raise ValueError(f"DKT_GATE_TOLERANCE must be >= 0, got {self.gate_tolerance}")
        if self.deploy not in DEPLOY_MODES:
            raise ValueError(f"DKT_DEPLOY must be one of {DEPLOY_MODES}, got {self.deploy!r}")

    @classmethod
    def from_env(cls) -> RetrainSettings:
        env = os.environ
        home = Path(env.get("DKT_HOME", ".dkt"))
        return cls(
            holdout_fraction=float(env.get("DKT_HOLDOUT_FRACTION", cls.holdout_fraction)),
            holdout_salt=env.get("DKT_HOLDOUT_SALT", cls.holdout_salt),
            gate_tolerance=float(env.get("DKT_GATE_TOLERANCE", cls.gate_tolerance)),
            deploy=env.get("DKT_DEPLOY", cls.deploy).strip().lower() or cls.deploy,
            cache_dir=Path(env.get("DKT_RETRAIN_CACHE", str(home / "cache" / "retrain"))),
            bootstrap=int(env.get("DKT_EVAL_BOOTSTRAP", cls.bootstrap)),
        )
