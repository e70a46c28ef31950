"""Adaptive practice: which item comes next (pure functions; the app makes the one API call).

1. ``candidates``: up to ``MAX_CANDIDATES`` (the API's 64 targets per student) unseen items of the practice
   scope, spread over skills: the student's weakest skills by accuracy first (skills not tried yet count
   as 50%), at most ``PER_SKILL`` items each.
2. One ``POST /predict`` with those items as the targets of one student gives P(correct) for each.
3. ``choose_next``: a skill's mastery is the mean predicted chance of its candidates; among the items of the
   ``WEAKEST`` weakest skills, pick the one whose chance is nearest the target (``DKT_CLIENT_PRACTICE_TARGET``,
   default 0.7: hard enough to learn from, likely enough to succeed). Ties: the weaker skill, then item id.
When the API cannot answer, ``fallback_next`` (not adaptive, and the page says so): the skill with the lowest
accuracy so far (untried = 50%), its first unseen item in bank order.
An item is never repeated within a session: the callers exclude every item the session has shown.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

MAX_CANDIDATES = 64  # dkt_core.api.MAX_TARGETS_PER_STUDENT
PER_SKILL = 4
WEAKEST = 3
UNTRIED = 0.5  # accuracy assumed for a skill the student has not answered yet
FALLBACK_RULE = ("weakest skill by your accuracy so far (untried skills count as 50%), "
                 "its next unseen question in bank order")


@dataclass(frozen=True)
class Option:
    item_id: str
    tag: str


def accuracy(history: Iterable[Mapping]) -> dict[str, float]:
    """Share of correct answers per KnowledgeTag."""
    right: dict[str, int] = {}
    seen: dict[str, int] = {}
    for h in history:
        tag = str(h["KnowledgeTag"])
        seen[tag] = seen.get(tag, 0) + 1
        right[tag] = right.get(tag, 0) + int(h["answerCode"])
    return {t: right[t] / seen[t] for t in seen}


def _by_weakness(pool: Sequence[Option], acc: Mapping[str, float], salt: str) -> list[str]:
    tags = list(dict.fromkeys(o.tag for o in pool))
    # weakest first; equal ones in a per-session order (so two sessions do not always start alike)
    return sorted(tags, key=lambda t: (acc.get(t, UNTRIED), hashlib.sha256(f"{salt}/{t}".encode()).digest()))


def candidates(pool: Sequence[Option], exclude: set[str], acc: Mapping[str, float], *, salt: str = "",
               limit: int = MAX_CANDIDATES, per_skill: int = PER_SKILL) -> list[Option]:
    """Up to ``limit`` unseen options, ``per_skill`` per skill, weakest skills (by ``acc``) first."""
    by_tag: dict[str, list[Option]] = {}
    for o in pool:
        if o.item_id not in exclude:
            by_tag.setdefault(o.tag, []).append(o)
    out: list[Option] = []
    for tag in _by_weakness([o for o in pool if o.tag in by_tag], acc, salt):
        out.extend(by_tag[tag][:per_skill])
        if len(out) >= limit:
            break
    return out[:limit]


def skill_mastery(options: Sequence[Option], chance: Mapping[str, float]) -> dict[str, float]:
    """Mean predicted chance of each skill's candidates."""
    sums: dict[str, list[float]] = {}
    for o in options:
        if o.item_id in chance:
            sums.setdefault(o.tag, []).append(chance[o.item_id])
    return {t: sum(v) / len(v) for t, v in sums.items()}


def choose_next(options: Sequence[Option], chance: Mapping[str, float], target: float,
                weakest: int = WEAKEST) -> Option | None:
    """The option of the ``weakest`` weakest skills whose chance is nearest ``target`` (None: no option)."""
    mastery = skill_mastery(options, chance)
    if not mastery:
        return None
    weak = set(sorted(mastery, key=lambda t: (mastery[t], t))[:weakest])
    pool = [o for o in options if o.tag in weak and o.item_id in chance]
    return min(pool, key=lambda o: (abs(chance[o.item_id] - target), mastery[o.tag], o.item_id))


def fallback_next(pool: Sequence[Option], exclude: set[str], acc: Mapping[str, float]) -> Option | None:
    """Not adaptive (the API is unreachable): the weakest skill by accuracy, its first unseen item."""
    unseen = [o for o in pool if o.item_id not in exclude]
    if not unseen:
        return None
    tag = min(dict.fromkeys(o.tag for o in unseen), key=lambda t: (acc.get(t, UNTRIED), t))
    return next(o for o in unseen if o.tag == tag)
