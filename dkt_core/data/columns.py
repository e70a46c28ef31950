"""Names of the interaction log's columns: the bottom of the import layers (no imports at all).

Every layer (data, features, models, training, evaluation, retrain) names a column through these
constants instead of importing a higher layer for a string. The reader's column order is
``dkt_core.data.io.COLUMNS`` (a test keeps the two equal); this module is to be merged into the data
contract (``dkt_core.data.schema``) once that file is free (issue 14).
"""

from __future__ import annotations

USER = "userID"
ITEM = "assessmentItemID"
TEST = "testId"
LABEL = "answerCode"  # 1 correct, 0 wrong, -1 unknown (a row to predict)
TIME = "Timestamp"
TAG = "KnowledgeTag"
