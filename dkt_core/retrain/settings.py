"""Settings of the retraining steps, from the environment (nothing hard-coded, no secrets)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEPLOY_MODES = ("swarm", "none")
ENV_NAMES = {"bootstrap": "DKT_EVAL_BOOTSTRAP", "min_new_rows": "DKT_RETRAIN_MIN_NEW_ROWS",
             "min_new_users": "DKT_RETRAIN_MIN_NEW_USERS", "judge_min_rows": "DKT_JUDGE_MIN_ROWS",
             "judge_min_users": "DKT_JUDGE_MIN_USERS"}


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
    # User-bootstrap replicates (fixed seed) of every interval: hold-out AUCs, the gate's paired
    # difference, live AUC, drift.
    bootstrap: int = 200
    bootstrap_seed: int = 0
    # A batch retrains only when the answered rows added since the last training reach both (the DAG's
    # min_new_rows / min_new_users params default to these).
    min_new_rows: int = 500
    min_new_users: int = 20
    # Live AUC and drift on fewer rows or users than this are reported but marked "too few to judge".
    judge_min_rows: int = 200
    judge_min_users: int = 20

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"DKT_HOLDOUT_FRACTION must be in (0, 1), got {self.holdout_fraction}")
        if self.gate_tolerance < 0:
            raise ValueError(f"DKT_GATE_TOLERANCE must be >= 0, got {self.gate_tolerance}")
        for name in ("bootstrap", "min_new_rows", "min_new_users", "judge_min_rows", "judge_min_users"):
            if getattr(self, name) < 0:
                raise ValueError(f"{ENV_NAMES[name]} must be >= 0, got {getattr(self, name)}")
        if self.deploy not in DEPLOY_MODES:
            raise ValueError(f"DKT_DEPLOY must be one of {DEPLOY_MODES}, got {self.deploy!r}")

    def too_few(self, n_rows: int, n_users: int) -> str | None:
        """Why a metric on ``n_rows`` rows of ``n_users`` users cannot be judged (None: enough)."""
        if n_rows < self.judge_min_rows or n_users < self.judge_min_users:
            return (f"too few to judge: {n_rows} rows from {n_users} users (needs {self.judge_min_rows} rows and "
                    f"{self.judge_min_users} users: DKT_JUDGE_MIN_ROWS / DKT_JUDGE_MIN_USERS)")
        return None

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
            min_new_rows=int(env.get("DKT_RETRAIN_MIN_NEW_ROWS", cls.min_new_rows)),
            min_new_users=int(env.get("DKT_RETRAIN_MIN_NEW_USERS", cls.min_new_users)),
            judge_min_rows=int(env.get("DKT_JUDGE_MIN_ROWS", cls.judge_min_rows)),
            judge_min_users=int(env.get("DKT_JUDGE_MIN_USERS", cls.judge_min_users)),
        )
