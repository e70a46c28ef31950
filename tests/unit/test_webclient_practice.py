"""Adaptive practice, results, progress and the teacher's class view through Flask's test client, against
the loopback server that speaks the API contract (tests/unit/test_webclient_app.py)."""

from __future__ import annotations

import csv
import io
import re

import pytest

from dkt_core.webclient.bank import QuestionBank, build_bank, with_generated_content
from dkt_core.webclient.pages import scope_key
from tests.unit.test_webclient_app import SECRET, ContractServer, free_port
from tests.unit.test_webclient_app import make_client as make_client_fixture
from tests.webclient_flask import csrf, sign_up

make_client = make_client_fixture  # the same fixture (an app on tmp_path against a given API URL)


def _generated_bank() -> QuestionBank:
    import pandas as pd

    from dkt_core.webclient.bank import SEED_COLUMNS

    # two tests of grade 3 with 4 items each, three skills
    rows = [("u", f"A03000{t}00{i}", f"A030000{t:03d}", 1, "2020-01-01 00:00:00", str(1000 + (i + t) % 3))
            for t in (1, 2) for i in range(1, 5)]
    return with_generated_content(build_bank(pd.DataFrame(rows, columns=SEED_COLUMNS), answer_secret=SECRET))


def _practice_answer(c, sid: int, right: bool, bank: QuestionBank):
    page = c.get(f"/practice/{sid}").get_data(as_text=True)
    item = re.search(r'id="question-text" data-item="([^"]+)"', page).group(1)
    key = bank.items[item].answer
    choice = key if right else next(x for x in "ABCD" if x != key)
    r = c.post(f"/practice/{sid}/answer", data={"csrf": csrf(c, f"/practice/{sid}"), "item": item, "choice": choice})
    assert r.status_code == 303, r.get_data(as_text=True)
    return item, page, r


def test_practice_picks_with_one_batched_call_never_repeats_and_ends_with_results(make_client):
    server = ContractServer()
    bank = _generated_bank()
    server.chance = {i: 0.05 + 0.1 * n for n, i in enumerate(sorted(bank.items))}
    try:
        app, c = make_client(server.url, bank=bank, practice_length=5, practice_target=0.7)
        sign_up(c, "pat")
        (subject, grade, _), *_ = bank.groups()
        assert grade == 3
        r = c.post("/practice", data={"csrf": csrf(c, "/"), "scope": "Nothing|9"})
        assert r.status_code == 400 and "not a subject and grade" in r.get_data(as_text=True)
        assert c.post("/practice", data={"csrf": csrf(c, "/"), "scope": scope_key(subject, grade)}).status_code == 303
        r = c.post("/practice", data={"csrf": csrf(c, "/"), "scope": "all"})
        assert r.status_code == 303
        sid = int(r.headers["Location"].rsplit("/", 1)[1])
        seen = []
        for n in range(5):
            before = len([q for q in server.requests if q[0] == "/predict"])
            item, page, r = _practice_answer(c, sid, right=n % 2 == 0, bank=bank)
            assert 'data-rule="adaptive"' in page and 'id="prediction"' not in page  # hidden by default
            predicts = [q for q in server.requests if q[0] == "/predict"][before:]
            assert len(predicts) == 1  # ONE call per pick, over all candidates
            targets = predicts[0][1]["students"][0]["targets"]
            assert (1 < len(targets) if n == 0 else 1 <= len(targets)) and len(targets) <= 64 and item in {t["assessmentItemID"] for t in targets}
            seen.append(item)
        assert len(set(seen)) == 5  # never repeated within the session
        assert r.headers["Location"].endswith(f"/results/practice/{sid}")
        page = c.get(r.headers["Location"]).get_data(as_text=True)
        assert 'data-correct="3" data-n="5"' in page
        assert len(re.findall(r'class="result ', page)) == 5
        for item in seen:  # the right answers and explanations are listed
            assert bank.items[item].explanation in page.replace("&#39;", "'")
        # another student cannot open this session
        other = app.test_client()
        sign_up(other, "eve")
        assert other.get(f"/practice/{sid}").status_code == 404
    finally:
        server.shutdown()


def test_practice_falls_back_to_a_fixed_rule_and_says_so(make_client):
    bank = _generated_bank()
    app, c = make_client(f"http://127.0.0.1:{free_port()}", bank=bank, practice_length=2)  # service down
    sign_up(c, "dana")
    r = c.post("/practice", data={"csrf": csrf(c, "/"), "scope": "all"})
    sid = int(r.headers["Location"].rsplit("/", 1)[1])
    item, page, r = _practice_answer(c, sid, right=False, bank=bank)
    assert 'data-rule="fallback"' in page and "chosen by a fixed rule" in page
    page = c.get(r.headers["Location"]).get_data(as_text=True)
    assert "Not quite." in page and bank.items[item].explanation.split(":")[0] in page.replace("&#39;", "'")


def test_predicted_chance_is_shown_only_when_the_setting_says_so(make_client):
    server = ContractServer()
    try:
        for show in (False, True):
            app, c = make_client(server.url, bank=_generated_bank(), show_prediction=show)
            sign_up(c, f"show-{int(show)}")
            r = c.post("/practice", data={"csrf": csrf(c, "/"), "scope": "all"})
            page = c.get(r.headers["Location"]).get_data(as_text=True)
            assert ('id="prediction"' in page) is show
    finally:
        server.shutdown()


def test_progress_page_draws_mastery_over_time_as_inline_svg(make_client):
    server = ContractServer()
    bank = _generated_bank()
    try:
        app, c = make_client(server.url, bank=bank)
        sign_up(c, "gus")
        test = sorted(bank.tests)[0]
        for item in bank.tests[test]:
            page = c.get(f"/quiz/{test}").get_data(as_text=True)
            c.post(f"/quiz/{test}/answer", data={"csrf": csrf(c, f"/quiz/{test}"), "item": item,
                                                 "choice": bank.items[item].answer})
        page = c.get("/progress").get_data(as_text=True)
        assert 'id="mastery-chart"' in page and "<svg" in page and 'viewBox="0 0' in page
        assert "<script" not in page and "http" not in page.split("<main>")[1]  # no CDN, no JS
        names = re.findall(r'data-skill="([^"]+)"', page)
        assert names and all("skill" in n for n in names)  # named skills, not bare tag ids
        assert len(re.findall(r'class="sitting"', page)) == 1
        home = c.get("/").get_data(as_text=True)
        assert "4 / 4" in home  # the returning student's history with the score
    finally:
        server.shutdown()


def test_teacher_class_view_heatmap_risk_csv_and_roles(make_client):
    server = ContractServer()
    try:
        app, t = make_client(server.url)
        sign_up(t, "mr-t", role="teacher")
        code = re.search(r'id="class-code">([A-Z0-9]{8})<', t.get("/teacher").get_data(as_text=True)).group(1)
        students = {}
        for name in ("ann", "bob"):
            s = app.test_client()
            students[name] = (s, sign_up(s, name, class_code=code))
            s.post("/quiz/T1/answer", data={"csrf": csrf(s, "/quiz/T1"), "item": "i0", "choice": "A"})
        page = t.get("/teacher").get_data(as_text=True)
        assert len(re.findall(r'class="heat-row"', page)) == 2
        assert re.findall(r'class="cell h\d" data-p="([^"]+)"', page)  # k0/k1 from /knowledge_state
        kstate = [q for q in server.requests if q[0] == "/knowledge_state"]
        assert {q[1]["userID"] for q in kstate} >= {students["ann"][1], students["bob"][1]}
        r = t.get("/teacher/class.csv")
        rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
        assert r.headers["Content-Type"].startswith("text/csv") and [x["username"] for x in rows] == ["ann", "bob"]
        assert all(x["mean_mastery"] for x in rows)
        ann = students["ann"][1]
        assert t.get(f"/teacher/student/{ann}").status_code == 200
        # roles: a student gets 403 on every teacher page; another teacher gets 403 for a student not theirs
        s = students["ann"][0]
        for url in ("/teacher", "/teacher/class.csv", f"/teacher/student/{ann}"):
            assert s.get(url).status_code == 403
        other = app.test_client()
        sign_up(other, "ms-o", role="teacher")
        r = other.get(f"/teacher/student/{ann}")
        assert r.status_code == 403 and "not in your class" in r.get_data(as_text=True)
    finally:
        server.shutdown()


@pytest.mark.parametrize("snapshots,falling", [
    ([(1, "t", {"a": 0.8}), (6, "t", {"a": 0.6})], True),
    ([(1, "t", {"a": 0.6}), (6, "t", {"a": 0.62})], False),
    ([(1, "t", {"a": 0.8}), (3, "t", {"a": 0.2})], False),  # fewer than 5 answers apart: not judged
])
def test_at_risk_low_or_falling(snapshots, falling):
    from dkt_core.webclient.inference import Outcome
    from dkt_core.webclient.pages import student_row

    history = [{"KnowledgeTag": "a", "answerCode": 1}] * 6
    row = student_row({"username": "x", "user_id": "u"}, history, Outcome({"a": 0.9}), snapshots)
    assert any("falling" in r for r in row["risk"]) is falling
    low = student_row({"username": "x", "user_id": "u"}, history, Outcome({"a": 0.3}), [])
    assert low["risk"] == ["low mastery (30%)"]
