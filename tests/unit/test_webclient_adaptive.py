"""The adaptive choice (issue 13): from the weakest skills, the item whose predicted chance is nearest the
target; candidates spread over skills, weakest first, never an item already shown; the fallback rule."""

from __future__ import annotations

from dkt_core.webclient.adaptive import Option, candidates, choose_next, fallback_next, skill_mastery

# three skills: "easy" (strong), "mid", "hard" (weakest). chance = the model's P(correct) per item.
OPTIONS = [Option("e1", "easy"), Option("e2", "easy"), Option("m1", "mid"), Option("m2", "mid"),
           Option("h1", "hard"), Option("h2", "hard"), Option("h3", "hard")]
CHANCE = {"e1": 0.95, "e2": 0.71, "m1": 0.60, "m2": 0.50, "h1": 0.20, "h2": 0.45, "h3": 0.30}


def test_mastery_is_the_mean_chance_of_a_skills_candidates():
    m = skill_mastery(OPTIONS, CHANCE)
    assert {t: round(v, 4) for t, v in m.items()} == {"easy": 0.83, "mid": 0.55, "hard": 0.3167}


def test_prefers_items_near_the_target_from_the_weakest_skills():
    # weakest=1: only "hard" counts; its item nearest 0.7 is h2 (0.45), although e2 (0.71) is nearer overall
    assert choose_next(OPTIONS, CHANCE, target=0.7, weakest=1).item_id == "h2"
    # weakest=2: "hard" and "mid"; m1 (0.60) is nearest 0.7 there
    assert choose_next(OPTIONS, CHANCE, target=0.7, weakest=2).item_id == "m1"
    # the target moves the pick within the weak skills
    assert choose_next(OPTIONS, CHANCE, target=0.25, weakest=2).item_id == "h1"
    # all skills: the item nearest the target wins (e2, 0.71)
    assert choose_next(OPTIONS, CHANCE, target=0.7, weakest=3).item_id == "e2"


def test_ties_go_to_the_weaker_skill_then_the_item_id():
    opts = [Option("b", "s1"), Option("a", "s1"), Option("c", "s2"), Option("z", "s2")]
    chance = {"a": 0.6, "b": 0.8, "c": 0.8, "z": 0.2}  # s1 mean 0.7, s2 mean 0.5: s2 is weaker
    assert choose_next(opts, chance, target=0.7, weakest=2).item_id in {"a", "b", "c"}
    assert choose_next(opts, chance, target=0.8, weakest=2).item_id == "c"  # b and c tie at 0.8: weaker s2
    assert choose_next(opts, {}, target=0.7) is None


def test_candidates_skip_seen_items_spread_over_skills_weakest_first():
    pool = [Option(f"{t}{i}", t) for t in ("x", "y", "z") for i in range(6)]
    acc = {"x": 0.9, "y": 0.2}  # z untried counts as 0.5
    got = candidates(pool, exclude={"y0", "y1"}, acc=acc, limit=7, per_skill=3)
    assert [o.item_id for o in got] == ["y2", "y3", "y4", "z0", "z1", "z2", "x0"]
    assert len(candidates(pool, set(), {}, limit=64)) == 12  # 4 per skill by default, 3 skills
    assert candidates(pool, {o.item_id for o in pool}, acc) == []


def test_fallback_takes_the_weakest_skill_by_accuracy_and_its_first_unseen_item():
    pool = [Option("a1", "a"), Option("a2", "a"), Option("b1", "b"), Option("b2", "b")]
    assert fallback_next(pool, set(), {"a": 0.8, "b": 0.3}).item_id == "b1"
    assert fallback_next(pool, {"b1"}, {"a": 0.8, "b": 0.3}).item_id == "b2"
    assert fallback_next(pool, {"b1", "b2"}, {"a": 0.8, "b": 0.3}).item_id == "a1"
    assert fallback_next(pool, {"a1", "a2", "b1", "b2"}, {}) is None
