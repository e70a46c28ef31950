"""Typed request/response models of the inference API (pydantic): the contract between the BentoML
service, the student web client, the smoke tests and the load generator.

Interactions use the seed column names so a history is just rows of the seed format.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_STUDENTS_PER_REQUEST = 256
MAX_TARGETS_PER_STUDENT = 64
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
_TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    assessmentItemID: str = Field(min_length=1, max_length=64)
    testId: str = Field(min_length=1, max_length=64)
    KnowledgeTag: str = Field(min_length=1, max_length=64)
    Timestamp: str = Field(description="YYYY-MM-DD HH:MM:SS")

    @field_validator("Timestamp")
    @classmethod
    def _timestamp(cls, v: str) -> str:
        # a compiled regex for the shape, fromisoformat (C code) for real dates: per-row strptime
        # dominated the parsing of large batches
        try:
            if not _TIMESTAMP_RE.fullmatch(v):
                raise ValueError
            datetime.fromisoformat(v)
        except ValueError:
            raise ValueError(f"Timestamp {v!r} must look like 2020-03-24 00:17:11 (a real date and time)") from None
        return v


class Interaction(_Item):
    """One answered item of a student's history."""

    answerCode: int = Field(ge=0, le=1, description="1 correct, 0 wrong")


class Target(_Item):
    """An item to predict (the student has not answered it yet)."""


class StudentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    userID: str = Field(min_length=1, max_length=64)
    history: list[Interaction] = Field(default_factory=list)
    targets: list[Target] = Field(min_length=1, max_length=MAX_TARGETS_PER_STUDENT)


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
    history: list[Interaction] = Field(min_length=1)


class KnowledgeStateResponse(BaseModel):
    model_version: str
    userID: str
    tags: dict[str, float] = Field(description="KnowledgeTag -> P(correct) on a typical item of that tag")


class VersionResponse(BaseModel):
    model_version: str
    data_version: str
    trained_at: str
    models: list[str]
