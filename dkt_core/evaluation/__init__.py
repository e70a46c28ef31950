"""Evaluation stage: last-item and all-item metrics with user-level bootstrap intervals."""
