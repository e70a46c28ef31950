"""Validation: split a log into valid rows and rejected rows (each with a reason); the valid rows are
normalised (``data.normalise``: stripped, typed, exact duplicates dropped, sorted per user by time).
Invariant: valid + rejected + duplicates == rows read.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.errors

from dkt_core.data.columns import COLUMNS, TIMESTAMP_FORMAT
from dkt_core.data.io import RawTable, ReadLimits, read_raw, read_raw_bytes, read_raw_stream
from dkt_core.data.normalise import normalise
from dkt_core.data.schema import VALID_SCHEMA, parse_timestamps, raw_schema

WRONG_FIELD_COUNT = "wrong field count"


@dataclass
class ValidationResult:
    name: str
    valid: pd.DataFrame  # typed seed columns, sorted per user by time (users in order of appearance)
    rejected: pd.DataFrame  # "line", "reason", the raw seed fields (as text), "raw" for malformed lines
    duplicates: int
    rows_read: int
    warnings: list[str] = field(default_factory=list)

    @property
    def reasons(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.rejected["reason"].value_counts().sort_index().items()}

    def summary(self) -> dict:
        return {
            "file": self.name,
            "rows_read": self.rows_read,
            "valid": len(self.valid),
            "rejected": len(self.rejected),
            "duplicates": self.duplicates,
            "reasons": self.reasons,
            "users": int(self.valid["userID"].nunique()),
            "warnings": self.warnings,
        }

    def write_quarantine(self, directory: str | Path) -> Path:
        """Write valid.csv, rejected.csv (with reasons) and report.json under ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        to_seed_csv(self.valid, directory / "valid.csv")
        self.rejected.to_csv(directory / "rejected.csv", index=False)
        (directory / "report.json").write_text(json.dumps(self.summary(), indent=2))
        return directory


def validate_file(
    path: str | Path, *, limits: ReadLimits | None = None, now: datetime | None = None
) -> ValidationResult:
    """Read and validate ``path``; raises ``DataFileError`` when the file is unusable."""
    return validate_raw(read_raw(path, limits), now=now)


def validate_bytes(
    data: bytes, name: str, *, limits: ReadLimits | None = None, now: datetime | None = None
) -> ValidationResult:
    """Validate bytes already in memory (kept for callers that hold them; prefer ``validate_stream``)."""
    return validate_raw(read_raw_bytes(data, name, limits), now=now)


def validate_stream(
    stream: typing.BinaryIO, name: str, *, limits: ReadLimits | None = None, now: datetime | None = None
) -> ValidationResult:
    """Read ``stream`` (e.g. an S3 ``StreamingBody``) within ``limits`` and validate it.

    Raises ``DataFileError`` when the object is unusable; errors of the stream itself propagate.
    """
    return validate_raw(read_raw_stream(stream, name, limits or ReadLimits()), now=now)


def validate_raw(raw: RawTable, *, now: datetime | None = None) -> ValidationResult:
    """Judge every row of ``raw`` at ``now`` (default: the current time; fixes the Timestamp range)."""
    now = now or datetime.now(UTC)
    frame = raw.frame
    timestamps = parse_timestamps(frame["Timestamp"], now)  # once: both Timestamp checks and the typing use it
    reason = _first_failed_check(frame, raw_schema(now, timestamps))
    bad_mask = reason.notna().to_numpy()
    rejected = frame.loc[bad_mask, ["line", *COLUMNS]].assign(reason=reason[bad_mask].to_numpy())
    malformed = pd.DataFrame(
        {"line": [n for n, _ in raw.bad_lines], "reason": WRONG_FIELD_COUNT, "raw": [t for _, t in raw.bad_lines]}
    )
    rejected = pd.concat([rejected, malformed], ignore_index=True).sort_values("line", kind="stable")
    rejected = rejected[["line", "reason", *COLUMNS, "raw"]].reset_index(drop=True).astype({"line": np.int64})

    valid, duplicates = normalise(frame.loc[~bad_mask, COLUMNS], timestamps=timestamps.parsed)
    valid = VALID_SCHEMA.validate(valid)
    warnings = []
    if raw.extra_columns:
        warnings.append(f"{raw.name}: extra column(s) ignored: {', '.join(raw.extra_columns)}")
    result = ValidationResult(raw.name, valid, rejected, duplicates, raw.rows_read, warnings)
    assert len(valid) + len(rejected) + duplicates == raw.rows_read, "validation lost rows"
    return result


def _first_failed_check(frame: pd.DataFrame, schema: typing.Any) -> pd.Series:
    """Per row: the name of the first failed contract check (the rejection reason), or NA."""
    reason = pd.Series(pd.NA, index=frame.index, dtype="object")
    try:
        schema.validate(frame, lazy=True)
        return reason
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    cases = cases[cases["index"].notna()]
    order = {name: i for i, name in enumerate(_check_order(schema))}
    cases = cases.assign(rank=cases["check"].map(order).fillna(len(order)))
    first = cases.sort_values("rank", kind="stable").drop_duplicates("index")
    reason.loc[first["index"].astype(np.int64).to_numpy()] = first["check"].to_numpy()
    return reason


def _check_order(schema: typing.Any) -> list[str]:
    """Checks in column order, 'missing X' before the value checks of X."""
    return [c.name for col in schema.columns.values() for c in col.checks]


def to_seed_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write typed interactions back in the seed CSV format."""
    out = frame[COLUMNS].copy()
    out["Timestamp"] = out["Timestamp"].dt.strftime(TIMESTAMP_FORMAT)
    out.to_csv(path, index=False)


def load_interactions(path: str | Path, *, limits: ReadLimits | None = None) -> pd.DataFrame:
    """Read + validate, returning only the valid rows (for training/evaluation inputs). ``limits``: the
    size caps (the CLI passes the configured ones, so an operator can raise them for a large log)."""
    return validate_file(path, limits=limits).valid
