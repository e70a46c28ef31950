"""S3 keys of the training side (next to the ingestion layout in dkt_core.ingest.layout).

```
splits/v=NNNNNN/train.parquet        rows of the train users of a curated version
splits/v=NNNNNN/holdout.parquet      rows of the fixed hold-out users (they never train)
splits/v=NNNNNN/split.json           counts, fraction, salt (written last: marks a complete split)
runs/<run>/challenger.json           what a run trained (a retry reuses it instead of retraining)
models/<model_version>/artifact.tar.gz   the trained artifact directory
models/<model_version>/evaluation.json   challenger + champion metrics on the same hold-out
models/<model_version>/holdout_predictions.parquet
models/<model_version>/report.html (+ report.json, roc.png, calibration.png, live_auc.png)
models/champion.json                 the alias: which model serves (written only after a successful rollout)
models/last_trained.json             the newest training: data version, model version, run (the minimum batch
                                     counts the rows added since its data version)
reports/live_auc.json                live AUC of the serving champion per data version
```
"""

from __future__ import annotations

from dkt_core.ingest.layout import run_slug, version_name
from dkt_core.training.versions import check_model_version

MODELS_PREFIX = "models/"
CHAMPION_KEY = "models/champion.json"
LAST_TRAINED_KEY = "models/last_trained.json"
LIVE_AUC_KEY = "reports/live_auc.json"
ARTIFACT_FILE = "artifact.tar.gz"


def split_key(version: int, part: str) -> str:
    if part not in ("train.parquet", "holdout.parquet", "split.json"):
        raise ValueError(f"unknown split part {part!r}")
    return f"splits/{version_name(version)}/{part}"


def challenger_record_key(run_id: str) -> str:
    return f"runs/{run_slug(run_id)}/challenger.json"


def model_key(model_version: str, name: str) -> str:
    check_model_version(model_version)  # a value read back from S3 never becomes another key
    return f"{MODELS_PREFIX}{model_version}/{name}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/key -> (bucket, key)."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key
