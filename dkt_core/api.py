"""Typed request/response models of the inference API (pydantic): the contract between the BentoML
service, the student web client, the smoke tests and the load generator.

Interactions use the seed column names so a history is just rows of the seed format. History rows and
targets are TypedDicts (validated dicts), not model objects: a request carries hundreds of them per
student, and building a BaseModel instance per row cost 3-5x more than the validation itself.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict  # pydantic needs typing_extensions' TypedDict before Python 3.12

MAX_STUDENTS_PER_REQUEST = 256
MAX_TARGETS_PER_STUDENT = 64
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
# the shape is checked by pydantic's (Rust) regex per field; the calendar (no 2021-02-30) once per list,
# vectorised: a Python validator per interaction was a quarter of a serving worker's CPU
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"


Id = Annotated[str, Field(min_length=1, max_length=64)]


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


def _real_dates(rows: list[Target]) -> list[Target]:
    try:
        np.asarray([r["Timestamp"] for r in rows], dtype="datetime64[s]")
    except ValueError as exc:  # numpy names the value: 'Day out of range in datetime string "..."'
        raise ValueError(f"{exc}: every Timestamp must be a real date and time like 2020-03-24 00:17:11") from None
    return rows


History = Annotated[list[Interaction], AfterValidator(_real_dates)]
Targets = Annotated[list[Target], AfterValidator(_real_dates)]


class StudentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    userID: str = Field(min_length=1, max_length=64)
    history: History = Field(default_factory=list)
    targets: Targets = Field(min_length=1, max_length=MAX_TARGETS_PER_STUDENT)


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
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    userID: str = Field(min_length=1, max_length=64)
    history: History = Field(min_length=1)


class KnowledgeStateResponse(BaseModel):
    model_version: str
    userID: str
    tags: dict[str, float] = Field(description="KnowledgeTag -> P(correct) on a typical item of that tag")


class VersionResponse(BaseModel):
    model_version: str
    data_version: str
    trained_at: str
    models: list[str]
