"""Typed request/response models of the inference API (pydantic): the contract between the BentoML
service, the student web client, the smoke tests and the load generator.

Interactions use the seed column names so a history is just rows of the seed format. History rows and
targets are TypedDicts (validated dicts), not model objects: a request carries hundreds of them per
student, and building a BaseModel instance per row cost 3-5x more than the validation itself.

Limits (each answered with HTTP 400 naming the value or the limit): 1-``MAX_STUDENTS_PER_REQUEST``
students, 1-``MAX_TARGETS_PER_STUDENT`` targets and at most ``MAX_HISTORY_PER_STUDENT`` history rows per
student; every Timestamp a real date inside the data contract's range (``dkt_core.data.columns``:
``TIMESTAMP_MIN`` .. now + ``TIMESTAMP_MAX_FUTURE``); no target earlier than its history's last row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator, with_config
from typing_extensions import TypedDict  # pydantic needs typing_extensions' TypedDict before Python 3.12

from dkt_core.data.columns import (
    ID_MAX_LEN,
    TIMESTAMP_FORMAT,
    TIMESTAMP_MIN,
    TIMESTAMP_OUT_OF_RANGE,
    TIMESTAMP_PATTERN,
    timestamp_max,
)

MAX_STUDENTS_PER_REQUEST = 256
MAX_TARGETS_PER_STUDENT = 64
# A bound on parsing work per student (the model looks at the last DKT_HISTORY_WINDOW = 400 rows anyway);
# pydantic stops reading a list at its first row beyond the limit.
MAX_HISTORY_PER_STUDENT = 10_000
# The Timestamp shape (TIMESTAMP_PATTERN) is checked by pydantic's (Rust) regex per field; the calendar
# (no 2021-02-30) once per list, vectorised: a Python validator per interaction was a quarter of a serving
# worker's CPU.


Id = Annotated[str, Field(min_length=1, max_length=ID_MAX_LEN)]


@with_config(ConfigDict(extra="forbid", coerce_numbers_to_str=True))
class Target(TypedDict):
    """An item to predict (the student has not answered it yet)."""

    assessmentItemID: Id
    testId: Id
    KnowledgeTag: Id
    Timestamp: Annotated[str, Field(pattern=TIMESTAMP_PATTERN, description="YYYY-MM-DD HH:MM:SS, e.g. 2020-03-24 00:17:11")]


@with_config(ConfigDict(extra="forbid", coerce_numbers_to_str=True))
class Interaction(Target):
    """One answered item of a student's history."""

    answerCode: Annotated[int, Field(ge=0, le=1, description="1 correct, 0 wrong")]


_MIN64 = np.datetime64(TIMESTAMP_MIN, "s")


def checked_timestamps(stamps: list[str], names: Callable[[int], str] = "row {}".format) -> np.ndarray:
    """Seed-format Timestamps (shape already checked) -> datetime64[s], each a real date inside the data
    contract's range. One vectorised pass (numpy parses; min/max against the bounds), never a Python check
    per row; ``names(i)`` names the offending value's position in the error."""
    try:
        parsed = np.asarray(stamps, dtype="datetime64[s]")
    except ValueError as exc:  # numpy names the value: 'Day out of range in datetime string "..."'
        raise ValueError(f"{exc}: every Timestamp must be a real date and time like 2020-03-24 00:17:11") from None
    if not len(parsed):
        return parsed
    latest = np.datetime64(timestamp_max(), "s")
    lo, hi = parsed.min(), parsed.max()
    if lo < _MIN64 or hi > latest:
        bad = int(np.argmin(parsed)) if lo < _MIN64 else int(np.argmax(parsed))
        raise ValueError(f"{TIMESTAMP_OUT_OF_RANGE}: {stamps[bad]!r} ({names(bad)}); a Timestamp must lie between "
                         f"{TIMESTAMP_MIN:{TIMESTAMP_FORMAT}} and {latest.item():{TIMESTAMP_FORMAT}} (now + 1 day, UTC)")
    return parsed


def _real_dates(rows: list[Target]) -> list[Target]:
    checked_timestamps([r["Timestamp"] for r in rows])
    return rows


# A history on its own (/knowledge_state): its Timestamps are checked as one list.
History = Annotated[list[Interaction], Field(max_length=MAX_HISTORY_PER_STUDENT), AfterValidator(_real_dates)]


class StudentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    userID: str = Field(min_length=1, max_length=ID_MAX_LEN)
    # history and targets are checked together below: one parse of all of a student's Timestamps
    history: list[Interaction] = Field(default_factory=list, max_length=MAX_HISTORY_PER_STUDENT)
    targets: list[Target] = Field(min_length=1, max_length=MAX_TARGETS_PER_STUDENT)

    @model_validator(mode="after")
    def _timestamps(self) -> StudentRequest:
        n = len(self.history)
        stamps = checked_timestamps([r["Timestamp"] for r in (*self.history, *self.targets)],
                                    lambda i: f"history[{i}]" if i < n else f"targets[{i - n}]")
        if n:
            last, first = stamps[:n].max(), stamps[n:].min()
            if first < last:
                raise ValueError(f"target Timestamp '{first.item():{TIMESTAMP_FORMAT}}' is earlier than the "
                                 f"history's last row ('{last.item():{TIMESTAMP_FORMAT}}'): a target is an item "
                                 "answered after the history, so date it at or after it")
        return self


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    students: list[StudentRequest] = Field(min_length=1, max_length=MAX_STUDENTS_PER_REQUEST)


class StudentPrediction(BaseModel):
    userID: str
    probabilities: list[float] = Field(description="P(correct) per target, in request order")


class PredictResponse(BaseModel):
    model_version: str
    results: list[StudentPrediction]


class KnowledgeStateRequest(BaseModel):
    """The /knowledge_state body (the service's input model mirrors it; unknown fields are refused)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    userID: str = Field(min_length=1, max_length=ID_MAX_LEN)
    history: History = Field(min_length=1)


class TagState(BaseModel):
    """One KnowledgeTag of a knowledge state."""

    tag: str = Field(description="the KnowledgeTag")
    attempts: int = Field(description="answered items of this tag in the history sent (all rows, not only the "
                                      "model's window)")
    correct: int = Field(description="of those, answered correctly")
    mastery: float = Field(description="P(correct) on a typical unseen item of this tag (same as tags[tag])")
    seen_in_training: bool = Field(description="false: the model never saw this tag in training, so its mastery "
                                               "rests on the student's other answers and the population prior")


class KnowledgeStateResponse(BaseModel):
    model_version: str
    userID: str
    tags: dict[str, float] = Field(description="KnowledgeTag -> P(correct) on a typical item of that tag")
    tag_states: list[TagState] = Field(default_factory=list,
                                       description="per tag (sorted by tag): attempts, correct, mastery and "
                                                   "whether the model saw the tag in training")
    unseen_tags: list[str] = Field(default_factory=list,
                                   description="tags of the history the model never saw in training (sorted)")


class VersionResponse(BaseModel):
    model_version: str
    data_version: str
    trained_at: str
    models: list[str]
