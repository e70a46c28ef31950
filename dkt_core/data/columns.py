"""The interaction log's contract in constants: the bottom of the import layers (standard library only).

One home for what every layer agrees on about a row: the column names and their order, the answer
codes, the Timestamp text format and its accepted range, and the id rules. The pandera schemas
(``dkt_core.data.schema``), the reader (``data.io``), curation (``ingest.curated``), the HTTP API's
models (``dkt_core.api``), serving (``serving.frames``) and the web client all import these names
instead of writing their own copy: adding a column or changing a limit is one edit here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

USER = "userID"
ITEM = "assessmentItemID"
TEST = "testId"
LABEL = "answerCode"  # 1 correct, 0 wrong, -1 unknown (a row to predict)
TIME = "Timestamp"
TAG = "KnowledgeTag"

# The seed format's columns, in file order (the reader's, curation's and serving's frames use it).
COLUMNS = [USER, ITEM, TEST, LABEL, TIME, TAG]
# Text columns whose surrounding blanks are not part of the value (normalisation strips them).
TEXT_COLUMNS = (USER, ITEM, TEST, TAG)

ANSWER_CODES = ("0", "1", "-1")  # the raw text an answerCode may hold
UNKNOWN_LABEL = -1  # answerCode of a row to predict

# Ids: a userID is letters, digits and _.:- (it becomes part of keys and file names downstream);
# item, test and tag ids are any text of 1..ID_MAX_LEN characters.
ID_MAX_LEN = 64
ID_PATTERN = rf"[A-Za-z0-9_.:\-]{{1,{ID_MAX_LEN}}}"
_USER_ID = re.compile(ID_PATTERN)


def is_user_id(value: object) -> bool:
    """True when ``value`` is a userID the data contract accepts."""
    return isinstance(value, str) and _USER_ID.fullmatch(value) is not None


# Timestamps are naive UTC text in one format; the API checks the shape with TIMESTAMP_PATTERN.
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"

# The documented range of a Timestamp (naive UTC): from TIMESTAMP_MIN up to "now" plus
# TIMESTAMP_MAX_FUTURE (clock skew between devices). Rows outside it are rejected with
# TIMESTAMP_OUT_OF_RANGE; the API answers 400. Also keeps every value inside pandas' datetime64[ns]
# range (1677-09-21 .. 2262-04-11), which silently wrapped or raised before.
TIMESTAMP_MIN = datetime(1970, 1, 1)
TIMESTAMP_MAX_FUTURE = timedelta(days=1)
TIMESTAMP_OUT_OF_RANGE = "Timestamp out of range"


def timestamp_max(now: datetime | None = None) -> datetime:
    """The latest accepted Timestamp (naive UTC) at ``now`` (default: the current time; naive = UTC)."""
    now = now or datetime.now(UTC)
    if now.tzinfo is not None:
        now = now.astimezone(UTC)
    return now.replace(tzinfo=None) + TIMESTAMP_MAX_FUTURE
