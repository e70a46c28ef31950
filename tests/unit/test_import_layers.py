"""Imports point down (issue 14): every dkt_core module belongs to one layer, and no module imports a
module of a higher layer, at the top of the file or inside a function.

The layers, bottom to top (a module may import its own layer and those below it):

    contracts  the log's column names and data contract, the HTTP API's pydantic models, the version
    helpers    object storage, private files (no dkt_core imports)
    data       reading, validating, splitting, simulating interaction logs; numpy group operations
    features   the feature pipeline and ``FeatureSpec``
    evaluation the metric definitions (one AUC, one clip before a log): models score validation with it
    models     the model registry, each model, the sequence builder and the torch loop
    training   config, trainer, ensemble, artifact on disk
    predict    ``Predictor`` (an artifact's predictions) and scoring it on a file
    ingest     raw uploads -> curated versions in S3
    packaging  artifacts -> BentoML model store
    serving    the inference engine behind the HTTP service
    deploy     images, Swarm stack, rollout
    retrain    the retraining loop's steps (ingest, train, evaluate, gate, promote = package + deploy)
    edges      the CLI, its commands and the web client
    outside    tests, benchmarks, DAGs, plugins, the Bento service: never imported by dkt_core

The checker works on source (AST), so it also sees imports that only run inside a function; it is
itself tested on a small synthetic package with a deliberately upward import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (layer, module prefixes), bottom to top. A module takes the layer of its longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("contracts", ("dkt_core", "dkt_core.data.columns", "dkt_core.data.schema", "dkt_core.api")),
    ("helpers", ("dkt_core.storage", "dkt_core.private_files")),
    ("data", ("dkt_core.data",)),
    ("features", ("dkt_core.features",)),
    ("evaluation", ("dkt_core.evaluation",)),
    ("models", ("dkt_core.models",)),
    ("training", ("dkt_core.training",)),
    ("predict", ("dkt_core.predict",)),
    ("ingest", ("dkt_core.ingest",)),
    ("packaging", ("dkt_core.packaging",)),
    ("serving", ("dkt_core.serving",)),
    ("deploy", ("dkt_core.deploy",)),
    ("retrain", ("dkt_core.retrain",)),
    ("edges", ("dkt_core.cli", "dkt_core.commands", "dkt_core.webclient")),
    ("outside", ("tests", "bench", "dags", "plugins", "bento_service", "scripts")),
]

# Upward imports known and not yet fixed: (importer, imported) -> why. Empty means the rule holds
# everywhere; an entry that no longer occurs fails the test too, so this list cannot go stale.
ALLOWED: dict[tuple[str, str], str] = {}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, module: str, known: set[str]) -> set[str]:
    """Every module ``path`` imports (anywhere in the file), relative imports resolved. ``from p import x``
    names the submodule ``p.x`` when that module exists, else ``p``."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = {f"{target}.{alias.name}" for alias in node.names} & known
            out.update(subs)
            if len(subs) < len(node.names):
                out.add(target)
    return out


def layer_of(module: str, layers: list[tuple[str, tuple[str, ...]]]) -> tuple[int, str] | None:
    """(rank, name) of the longest prefix matching ``module``; None when no layer claims it."""
    best: tuple[int, int, str] | None = None
    for rank, (name, prefixes) in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), rank, name)
    return None if best is None else (best[1], best[2])


def check_layers(root: Path, package: str, layers: list[tuple[str, tuple[str, ...]]]
                 ) -> tuple[list[str], set[tuple[str, str]]]:
    """(problems, upward (importer, imported) pairs) of every module of ``root/package``.

    A problem is an upward import ("dkt_core.x imports dkt_core.y (layer A imports higher layer B)") or a
    module that no layer claims."""
    files = sorted((root / package).rglob("*.py"))
    known = {module_name(f, root) for f in files}
    problems: list[str] = []
    upward: set[tuple[str, str]] = set()
    for f in files:
        module = module_name(f, root)
        own = layer_of(module, layers)
        if own is None:
            problems.append(f"{module} belongs to no layer: add it to LAYERS in {Path(__file__).name}")
            continue
        for target in sorted(imported_modules(f, module, known)):
            theirs = layer_of(target, layers)
            if theirs is not None and theirs[0] > own[0]:
                upward.add((module, target))
                problems.append(f"{module} imports {target} (layer {own[1]} imports higher layer {theirs[1]})")
    return problems, upward


def test_dkt_core_imports_point_down():
    problems, upward = check_layers(ROOT, "dkt_core", LAYERS)
    problems = [p for p in problems if not any(p.startswith(f"{a} imports {b} ") for a, b in ALLOWED)]
    assert not problems, "imports must point down the layers (issue 14):\n" + "\n".join(problems)
    stale = set(ALLOWED) - upward
    assert not stale, f"allowed upward imports that no longer occur, remove them from ALLOWED: {sorted(stale)}"


# -- the checker itself, on a synthetic package -------------------------------------------------------------
TOY_LAYERS = [("low", ("toy.low",)), ("mid", ("toy.mid",)), ("high", ("toy.high", "toy"))]


def _toy(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in {"toy/__init__.py": "", "toy/low/__init__.py": "", "toy/mid/__init__.py": "",
                      "toy/high/__init__.py": "", **files}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_checker_accepts_downward_and_same_layer_imports(tmp_path):
    root = _toy(tmp_path, {
        "toy/low/a.py": "import json\n",
        "toy/mid/b.py": "from toy.low import a\nfrom . import c\nimport toy.low.a\n",
        "toy/mid/c.py": "from ..low.a import thing\n",
        "toy/high/d.py": "from toy.mid.b import x\nfrom toy import low\n",
    })
    assert check_layers(root, "toy", TOY_LAYERS) == ([], set())


@pytest.mark.parametrize(("source", "target"), [
    ("from toy.high.d import x\n", "toy.high.d"),  # absolute, top of file
    ("def f():\n    import toy.high.d\n", "toy.high.d"),  # function-level
    ("from ..high import d\n", "toy.high.d"),  # relative, submodule named in the import list
    ("from toy import high\n", "toy.high"),  # a package imported by name
])
def test_checker_fails_on_an_upward_import(tmp_path, source, target):
    root = _toy(tmp_path, {"toy/high/d.py": "x = 1\n", "toy/mid/b.py": source})
    problems, upward = check_layers(root, "toy", TOY_LAYERS)
    assert problems == [f"toy.mid.b imports {target} (layer mid imports higher layer high)"]
    assert upward == {("toy.mid.b", target)}


def test_checker_names_a_module_without_a_layer(tmp_path):
    root = _toy(tmp_path, {"toy/low/a.py": ""})
    problems, _ = check_layers(root, "toy", [("low", ("toy.low",)), ("mid", ("toy.mid",)), ("high", ("toy.high",))])
    assert problems == [f"toy belongs to no layer: add it to LAYERS in {Path(__file__).name}"]


def test_the_column_names_are_the_readers_columns():
    """The contract's column constants and the reader's column list name the same six columns."""
    from dkt_core.data import columns
    from dkt_core.data.io import COLUMNS

    assert [columns.USER, columns.ITEM, columns.TEST, columns.LABEL, columns.TIME, columns.TAG] == COLUMNS
