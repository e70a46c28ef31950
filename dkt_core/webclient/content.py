"""Question content: generated items for the demo catalog, and a documented import format for real banks.

The public logs hold no item text, so ``generate`` writes real questions for the simulated catalog: each
KnowledgeTag is a skill of one template family (arithmetic, fractions, percentages, linear equations,
geometry ...; plain or word problems), each item's numbers come from a RNG seeded by its item id (the same
id always gives the same question) and scale with the item's grade (the seed id's head digit). A question
has four choices, one correct, and a one-line explanation. The correct choice's *letter* is still the
bank's secret HMAC key (``bank.answer_for``): the generator puts the right value at that letter.

``read_content_file`` reads a real bank (CSV or JSON, one item per row; docs/client.md "Importing a
bank") and validates every row: a bad row is rejected with its number and reason, good rows are kept.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from dkt_core.data.columns import ID_PATTERN

LETTERS = ("A", "B", "C", "D")
MAX_TEXT = 1000
MAX_CHOICE = 200
MAX_ROWS = 100_000
IMPORT_FIELDS = ("item_id", "text", "choice_a", "choice_b", "choice_c", "choice_d", "answer", "explanation",
                 "tag", "tag_name", "test", "test_name", "subject", "grade")
REQUIRED_FIELDS = ("item_id", "text", "answer", "tag", "test")
_ID = re.compile(ID_PATTERN)

# --- generated questions -------------------------------------------------------------------------------------
Question = tuple[str, str, list[str], str]  # text, correct value, wrong values (>= 3 candidates), explanation


def _addition(r: random.Random, g: int, word: bool) -> Question:
    hi = 10 * 3 ** min(g, 6)
    a, b = r.randint(2, hi), r.randint(2, hi)
    text = (f"Mia has {a} stickers and gets {b} more. How many stickers does she have now?" if word
            else f"What is {a} + {b}?")
    return text, str(a + b), [str(a + b + 1), str(a + b - 10), str(abs(a - b)), str(a + b + 10)], \
        f"{a} + {b} = {a + b}."


def _subtraction(r: random.Random, g: int, word: bool) -> Question:
    hi = 10 * 3 ** min(g, 6)
    a, b = sorted((r.randint(2, hi), r.randint(2, hi)), reverse=True)
    a += 1
    text = (f"A library had {a} books and lent out {b}. How many books are left?" if word
            else f"What is {a} − {b}?")
    return text, str(a - b), [str(a - b + 1), str(a + b), str(a - b - 10), str(a - b + 10)], \
        f"{a} − {b} = {a - b}."


def _multiplication(r: random.Random, g: int, word: bool) -> Question:
    a, b = r.randint(2, 5 + g), r.randint(2, 9 + 2 * max(0, g - 4))
    text = (f"A box holds {b} pencils. How many pencils are in {a} boxes?" if word
            else f"What is {a} × {b}?")
    return text, str(a * b), [str(a * b + a), str(a * b - b), str(a + b), str(a * (b + 1) + 1)], \
        f"{a} × {b} = {a * b}."


def _division(r: random.Random, g: int, word: bool) -> Question:
    b, q = r.randint(2, 5 + g), r.randint(2, 9 + g)
    a = b * q
    text = (f"{a} apples are shared equally among {b} children. How many apples does each child get?" if word
            else f"What is {a} ÷ {b}?")
    return text, str(q), [str(q + 1), str(q - 1), str(a - b), str(q + b)], f"{b} × {q} = {a}, so {a} ÷ {b} = {q}."


def _order_of_operations(r: random.Random, g: int, word: bool) -> Question:
    a, b, c = r.randint(2, 9 + g), r.randint(2, 9), r.randint(2, 9)
    right, wrong = a + b * c, (a + b) * c
    text = (f"Tom buys {c} packs of {b} cards and already had {a}. How many cards does he have?" if word
            else f"What is {a} + {b} × {c}?")
    return text, str(right), [str(wrong), str(right + 1), str(a * b + c), str(right - c)], \
        f"Multiply first: {b} × {c} = {b * c}, then add {a}: {right}."


def _rounding(r: random.Random, g: int, word: bool) -> Question:
    place = 10 if g < 4 else 100
    n = r.randint(place + 1, place * 99)
    if n % place == 0:
        n += 1
    down = n - n % place
    right = down + place if n % place * 2 >= place else down
    name = "ten" if place == 10 else "hundred"
    text = (f"A stadium holds {n} people. What is that to the nearest {name}?" if word
            else f"Round {n} to the nearest {name}.")
    other = down + place if right == down else down
    return text, str(right), [str(other), str(n), str(right + place), str(right - place)], \
        f"The {'ones' if place == 10 else 'tens'} digit of {n} decides: it rounds to {right}."


def _fraction_addition(r: random.Random, g: int, word: bool) -> Question:
    d = r.choice([3, 4, 5, 6, 8, 10, 12])
    a, b = r.randint(1, d - 1), r.randint(1, d - 1)
    total = Fraction(a, d) + Fraction(b, d)
    text = (f"A recipe needs {a}/{d} cup of milk and {b}/{d} cup of water. How many cups of liquid in all?"
            if word else f"What is {a}/{d} + {b}/{d}?")
    right = _frac(total)
    return text, right, [f"{a + b}/{d + d}", _frac(total + Fraction(1, d)), f"{a * b}/{d}", _frac(total + 1)], \
        f"Same denominator: add the numerators, {a} + {b} = {a + b}, so {a + b}/{d}" + \
        (f" = {right}." if right != f"{a + b}/{d}" else ".")


def _fraction_of(r: random.Random, g: int, word: bool) -> Question:
    d = r.choice([2, 3, 4, 5, 10])
    n = r.randint(1, d - 1)
    whole = d * r.randint(2, 4 + g)
    right = whole // d * n
    text = (f"A class of {whole} students; {n}/{d} of them walk to school. How many walk?" if word
            else f"What is {n}/{d} of {whole}?")
    return text, str(right), [str(whole // d), str(whole - right), str(right + n), str(whole * n)], \
        f"{whole} ÷ {d} = {whole // d}, times {n} = {right}."


def _percentages(r: random.Random, g: int, word: bool) -> Question:
    p = r.choice([5, 10, 15, 20, 25, 30, 40, 50, 75])
    base = 20 * r.randint(1, 5 + g)
    right = Fraction(p * base, 100)
    text = (f"A jacket costs ${base}. It is {p}% off. How many dollars is the discount?" if word
            else f"What is {p}% of {base}?")
    return text, _num(right), [_num(right + 5), _num(Fraction(base, p) if p else right + 1), _num(base - right),
                               _num(right * 2)], f"{p}% of {base} = {p}/100 × {base} = {_num(right)}."


def _linear_equation(r: random.Random, g: int, word: bool) -> Question:
    a, x, b = r.randint(2, 3 + g), r.randint(1, 6 + g), r.randint(1, 20)
    c = a * x + b
    text = (f"A taxi charges ${b} plus ${a} per km. A ride cost ${c}. How many km was it?" if word
            else f"Solve for x: {a}x + {b} = {c}")
    return text, str(x), [str(x + 1), str(c - b), str((c + b) // a), str(max(0, x - 1))], \
        f"Subtract {b}: {a}x = {c - b}; divide by {a}: x = {x}."


def _area(r: random.Random, g: int, word: bool) -> Question:
    w, h = r.randint(2, 6 + g), r.randint(2, 6 + g)
    text = (f"A garden bed is {w} m long and {h} m wide. What is its area in m²?" if word
            else f"A rectangle is {w} cm by {h} cm. What is its area in cm²?")
    return text, str(w * h), [str(2 * (w + h)), str(w + h), str(w * h + w), str(w * h - h)], \
        f"Area = length × width = {w} × {h} = {w * h}."


def _perimeter(r: random.Random, g: int, word: bool) -> Question:
    w, h = r.randint(2, 6 + g), r.randint(2, 6 + g)
    text = (f"A fence goes around a field {w} m by {h} m. How many metres of fence?" if word
            else f"What is the perimeter of a {w} cm by {h} cm rectangle, in cm?")
    return text, str(2 * (w + h)), [str(w * h), str(w + h), str(2 * w + h), str(2 * (w + h) + 2)], \
        f"Perimeter = 2 × ({w} + {h}) = {2 * (w + h)}."


def _frac(f: Fraction) -> str:
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def _num(f: Fraction) -> str:
    return str(f.numerator) if f.denominator == 1 else f"{float(f):g}"


@dataclass(frozen=True)
class Family:
    name: str
    subject: str
    make: Callable[[random.Random, int, bool], Question]


# (family name, generator) per subject, subjects in their order; FAMILIES lists them with their subject.
_BY_SUBJECT: dict[str, tuple[tuple[str, Callable[[random.Random, int, bool], Question]], ...]] = {
    "Arithmetic": (("Addition", _addition), ("Subtraction", _subtraction), ("Multiplication", _multiplication),
                   ("Division", _division), ("Order of operations", _order_of_operations), ("Rounding", _rounding)),
    "Fractions and percentages": (("Adding fractions", _fraction_addition), ("Fraction of a number", _fraction_of),
                                  ("Percentages", _percentages)),
    "Algebra": (("Linear equations", _linear_equation),),
    "Geometry and measurement": (("Area of rectangles", _area), ("Perimeter", _perimeter)),
}
SUBJECTS = tuple(_BY_SUBJECT)
FAMILIES: tuple[Family, ...] = tuple(Family(name, subject, make) for subject in SUBJECTS
                                     for name, make in _BY_SUBJECT[subject])


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def family_of(tag: str) -> tuple[Family, bool]:
    """The template family of a KnowledgeTag and whether its items are word problems (from the tag alone)."""
    n = int(tag) if tag.isdigit() else _seed(tag)
    return FAMILIES[n % len(FAMILIES)], (n // len(FAMILIES)) % 2 == 1


def skill_name(tag: str) -> str:
    family, word = family_of(tag)
    return f"{family.name}{' (word problems)' if word else ''} · skill {tag}"


def grade_of(item_or_test: str) -> int | None:
    """The grade of a seed-format id (``A0`` + grade digit + ...), None for other ids."""
    m = re.fullmatch(r"A0(\d)0\d{6}", item_or_test)
    return int(m.group(1)) if m and m.group(1) != "0" else None


def generate_question(item_id: str, tag: str, correct_letter: str) -> tuple[str, tuple[str, ...], str]:
    """Text, the four choices (the right value at ``correct_letter``) and the explanation of ``item_id``."""
    family, word = family_of(tag)
    r = random.Random(_seed(f"item:{item_id}"))
    text, right, wrong, explanation = family.make(r, grade_of(item_id) or 5, word)
    distractors: list[str] = []
    for w in wrong:
        if w != right and w not in distractors and not w.startswith("-"):
            distractors.append(w)
    step = 2
    while len(distractors) < 3:  # a collision left too few: add nearby values
        extra = _shift(right, step)
        if extra not in distractors and extra != right:
            distractors.append(extra)
        step += 1
    r.shuffle(distractors)
    choices = distractors[:3]
    choices.insert(LETTERS.index(correct_letter), right)
    return text, tuple(choices), explanation


def _shift(value: str, k: int) -> str:
    try:
        return _frac(Fraction(value) + k) if "/" in value else _num(Fraction(value) + k)
    except ValueError:
        return f"{value} ({k})"


# --- importing a real bank -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContentRow:
    item_id: str
    text: str
    choices: tuple[str, str, str, str]
    answer: str
    explanation: str
    tag: str
    tag_name: str
    test: str
    test_name: str
    subject: str
    grade: int | None


class ContentFileError(ValueError):
    """The file as a whole cannot be read (format, header, size); row problems are listed, not raised."""


def _rows_of(path: Path) -> list[dict]:
    raw = path.read_bytes()
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise ContentFileError(f"{path} is not valid JSON: {e}") from None
        if isinstance(data, dict):
            data = data.get("items")
        if not isinstance(data, list):
            raise ContentFileError(f"{path}: expected a JSON list of item objects (or {{\"items\": [...]}})")
        return data
    if path.suffix.lower() != ".csv":
        raise ContentFileError(f"{path}: the bank file must end in .csv or .json")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ContentFileError(f"{path} is not UTF-8 text ({e}); save it as UTF-8 CSV") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [f for f in REQUIRED_FIELDS if f not in (reader.fieldnames or [])]
    if missing:
        raise ContentFileError(f"{path}: the header lacks {', '.join(missing)}; the columns are "
                               f"{', '.join(IMPORT_FIELDS)}")
    return list(reader)


def _check_row(n: int, row: object) -> ContentRow | str:
    """A validated row, or the reason it is rejected."""
    if not isinstance(row, dict):
        return "not an object with the item's fields"
    unknown = sorted(set(row) - set(IMPORT_FIELDS) - {"choices"})
    if unknown:
        return f"unknown field(s) {', '.join(map(str, unknown))}; the fields are {', '.join(IMPORT_FIELDS)}"

    def text(key: str) -> str:
        value = row.get(key)
        return "" if value is None else str(value).strip()

    for key in REQUIRED_FIELDS:
        if not text(key):
            return f"{key} is empty"
    for key in ("item_id", "tag", "test"):
        if not _ID.fullmatch(text(key)):
            return f"{key} {text(key)[:70]!r} must be 1-64 of A-Z a-z 0-9 _ . : -"
    if "choices" in row:
        choices = row["choices"]
        if not (isinstance(choices, list) and len(choices) == 4):
            return "choices must be a list of exactly four texts"
        choices = [str(c).strip() for c in choices]
    else:
        choices = [text(f"choice_{c.lower()}") for c in LETTERS]
    if any(not c for c in choices):
        return "every one of the four choices (A-D) needs a text"
    if len(set(choices)) < 4:
        return "two choices are the same; the four choices must differ"
    if any(len(c) > MAX_CHOICE for c in choices):
        return f"a choice is longer than {MAX_CHOICE} characters"
    if len(text("text")) > MAX_TEXT or len(text("explanation")) > MAX_TEXT:
        return f"text or explanation is longer than {MAX_TEXT} characters"
    answer = text("answer").upper()
    if answer not in LETTERS:
        return f"answer {text('answer')[:20]!r} must be one of A, B, C, D"
    grade: int | None = None
    if text("grade"):
        if not text("grade").isdigit() or not 1 <= int(text("grade")) <= 13:
            return f"grade {text('grade')[:10]!r} must be a whole number 1-13 (or empty)"
        grade = int(text("grade"))
    return ContentRow(text("item_id"), text("text"), tuple(choices), answer, text("explanation"), text("tag"),
                      text("tag_name") or f"Skill {text('tag')}", text("test"), text("test_name") or text("test"),
                      text("subject") or "Other", grade)


def read_content_file(path: Path) -> tuple[list[ContentRow], list[str]]:
    """Valid rows and one message per rejected row ("row N (item X): reason"); row 1 is the first data row.
    A duplicate item id, or a tag name / test subject that contradicts an earlier row, rejects the later row."""
    path = Path(path)
    if not path.is_file():
        raise ContentFileError(f"{path} does not exist")
    rows = _rows_of(path)
    if len(rows) > MAX_ROWS:
        raise ContentFileError(f"{path} has {len(rows)} rows, more than {MAX_ROWS}; split the bank")
    good: list[ContentRow] = []
    errors: list[str] = []
    seen: set[str] = set()
    tag_names: dict[str, str] = {}
    test_info: dict[str, tuple[str, str, int | None]] = {}
    for n, row in enumerate(rows, start=1):
        checked = _check_row(n, row)
        label = f"row {n}" + (f" (item {str(row.get('item_id'))[:64]})" if isinstance(row, dict)
                               and row.get("item_id") else "")
        if isinstance(checked, ContentRow):
            info = (checked.test_name, checked.subject, checked.grade)
            if checked.item_id in seen:
                checked = f"item_id {checked.item_id} appears in an earlier row"
            elif tag_names.setdefault(checked.tag, checked.tag_name) != checked.tag_name:
                checked = (f"tag {checked.tag} is named {checked.tag_name!r} here but "
                           f"{tag_names[checked.tag]!r} in an earlier row")
            elif test_info.setdefault(checked.test, info) != info:
                checked = (f"test {checked.test} has name/subject/grade {info} here but "
                           f"{test_info[checked.test]} in an earlier row")
        if isinstance(checked, str):
            errors.append(f"{label}: {checked}")
            continue
        seen.add(checked.item_id)
        good.append(checked)
    return good, errors
