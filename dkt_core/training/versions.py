"""The model version string: minted by the trainer, checked wherever a version is read back.

The trainer (dkt_core.training.trainer) mints "<YYYYMMDD>-<HHMMSS>-<8 hex of data+config>". This is the
one definition of a valid model version: every version read from S3 (champion.json, a run record, an
XCom) is checked against it before it names a key, a BentoML tag or a local path. Kept free of heavy
imports: the retrain steps and the DAG-side checks use it without loading the models.
"""

from __future__ import annotations

import re

MODEL_VERSION_RE = re.compile(r"\d{8}-\d{6}-[0-9a-f]{8}")  # fullmatch: no trailing newline


def check_model_version(value: object, *, source: str = "model_version") -> str:
    """``value`` if it is a model version the trainer could have minted, else ValueError naming ``source``."""
    if not isinstance(value, str) or not MODEL_VERSION_RE.fullmatch(value):
        raise ValueError(f"{source} {value!r} is not a model version like '20250101-120000-0123abcd'; "
                         "refusing to use it (fix or restore the object it was read from)")
    return value
