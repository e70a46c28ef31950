"""Training from a log larger than memory (issue 15 item 3): the artifact ``train`` would write, out of core.

1. read + validate + curate (``data.stream``): the log becomes normalised chunks of whole users on disk;
2. split by user (``data.split.user_buckets``, the same salt as ``prepare``), labelled rows only;
3. features (``features.chunked``): fitted in passes over the training chunks, then written chunk by chunk, in
   the forms the members read: float32 matrices (``FeatureSpec.tabular`` columns) next to their labels for a
   model with ``fit_chunks`` (LightGBM), the sequences' rows (``models.window_store``) for a model with
   ``fit_windows`` (the torch sequence models), one set per sequence layout;
4. each member from the chunks on disk: LightGBM builds its Dataset from them, a sequence model reads a batch
   of windows at a time;
5. the validation users' predictions, chunk by chunk; metrics and ensemble weights on a hash sample of at
   most about ``eval_max_users`` validation users (its n is in metrics.json), then ``assemble`` as usual.

Peak memory follows one chunk plus LightGBM's binned copy of the training rows (~1 byte per value), or one batch
plus the window boundaries and per-row validation predictions for a sequence model, not the log. Every number
equals the in-memory road's on the same log (tests/unit/test_out_of_core*.py) except the metrics' sample and the
two residual features' last float32 bit (see ``features.chunked``). Members are told apart by what they offer
(``fit_chunks`` or ``fit_windows``), never by name.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dkt_core.data.columns import ITEM, LABEL, TIME, USER
from dkt_core.data.fingerprint import file_sha256
from dkt_core.data.split import user_buckets
from dkt_core.data.stream import ChunkedLog, curate_chunks, read_chunk
from dkt_core.features import chunked
from dkt_core.features.pipeline import FeaturePipeline
from dkt_core.models import MODELS, DKTModel, FitResult
from dkt_core.models.lgbm import FeatureChunk
from dkt_core.models.sequences import SequenceLayout
from dkt_core.models.window_store import WindowChunk, WindowStore, write_chunk
from dkt_core.settings import TrainSettings
from dkt_core.training.config import TrainConfig
from dkt_core.training.trainer import Member, Prepared, assemble, user_hashes

log = logging.getLogger("dkt.train")
EVAL_SALT = "eval-sample"
MATRIX, WINDOWS = "matrix", "windows"  # what a member reads from disk


def disk_input(model: type[DKTModel] | DKTModel) -> str | None:
    """What a model trains from out of core: feature matrices (``fit_chunks`` / ``predict_chunk`` over
    ``FeatureChunk``), sequence windows (``layout``, ``fit_windows`` / ``predict_store`` over ``WindowStore``),
    or nothing (None: it cannot train out of core)."""
    if all(hasattr(model, m) for m in ("layout", "fit_windows", "predict_store")):
        return WINDOWS
    if all(hasattr(model, m) for m in ("fit_chunks", "predict_chunk")):
        return MATRIX
    return None


OUT_OF_CORE_MODELS = tuple(name for name, cls in MODELS.items() if disk_input(cls))


def should_stream(path: str | Path, mode: str, settings: TrainSettings) -> bool:
    """``mode`` "always" / "never", or "auto": a Parquet log of at least ``settings.out_of_core_rows`` rows (its
    metadata says so without reading it). A CSV streams only with "always": in "auto" it goes the in-memory
    road, whose size caps (``ReadLimits``) refuse a file too large for it, naming the setting."""
    if mode in ("always", "never"):
        return mode == "always"
    if mode != "auto":
        raise ValueError(f"--out-of-core must be auto, always or never, got {mode!r}")
    path = Path(path)
    with path.open("rb") as f:
        is_parquet = f.read(4) == b"PAR1"
    if not is_parquet:
        return False
    try:
        return pq.ParquetFile(path).metadata.num_rows >= settings.out_of_core_rows
    except (pa.ArrowException, OSError):
        return False  # the in-memory reader names what is wrong with the file


@dataclass
class Split:
    train: list[Path] = field(default_factory=list)
    valid: list[Path] = field(default_factory=list)
    rows: int = 0
    items: set[str] = field(default_factory=set)
    hashes: set[str] = field(default_factory=set)
    n_train_users: int = 0
    n_valid_users: int = 0
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    item_test_valid: dict[str, str] = field(default_factory=dict)  # chunked.item_tests of the validation rows


def split_chunks(curated: ChunkedLog, directory: Path, config: TrainConfig) -> Split:
    """Labelled rows of each chunk, split by user like ``prepare`` (salt ``valid-<seed>``)."""
    out = Split()
    for d in ("train", "valid"):
        (directory / d).mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(curated.frames()):
        frame = frame[frame[LABEL] >= 0].reset_index(drop=True)
        if frame.empty:
            continue
        out.rows += len(frame)
        out.items.update(pd.unique(frame[ITEM]))
        out.hashes |= user_hashes(frame[USER])
        lo, hi = frame[TIME].min(), frame[TIME].max()
        out.first = lo if out.first is None else min(out.first, lo)
        out.last = hi if out.last is None else max(out.last, hi)
        selected = user_buckets(frame[USER], f"valid-{config.seed}") < config.valid_frac
        for name, part, paths in (("train", frame[~selected], out.train), ("valid", frame[selected], out.valid)):
            if name == "valid":
                for item, test in chunked.item_tests([part]).items():
                    out.item_test_valid.setdefault(item, test)
            if len(part):
                path = directory / name / f"{k:05d}.parquet"
                pq.write_table(pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False), path)
                paths.append(path)
                n = int(part[USER].nunique())
                if name == "train":
                    out.n_train_users += n
                else:
                    out.n_valid_users += n
    if not out.train or not out.valid:
        raise ValueError(f"cannot split {out.n_train_users + out.n_valid_users} user(s) by "
                         f"{config.valid_frac:.0%}: need more users")
    return out


def train_out_of_core(data_path: str | Path, out_dir: str | Path, config: TrainConfig, *,
                      settings: TrainSettings | None = None, progress: bool = True) -> Path:
    """Train ``config.models`` on the log at ``data_path`` out of core; write the artifact."""
    unsupported = [m for m in config.models if m not in OUT_OF_CORE_MODELS]
    if unsupported:
        raise ValueError(f"out-of-core training trains {', '.join(OUT_OF_CORE_MODELS)} only, not {unsupported}: "
                         "they read their inputs in memory; use --out-of-core never on a log that fits in memory "
                         "for them")
    settings = settings or TrainSettings()
    work = Path(tempfile.mkdtemp(prefix="dkt-train-", dir=settings.work_dir))
    try:
        return _train(Path(data_path), Path(out_dir), config, settings, work, progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _train(data_path: Path, out_dir: Path, config: TrainConfig, settings: TrainSettings, work: Path,
           progress: bool) -> Path:
    t0 = time.perf_counter()
    stages: dict[str, float] = {}
    curated = curate_chunks(data_path, work / "curated", chunk_users=settings.chunk_users)
    stages.update(curated.seconds)
    if curated.rejected:
        log.warning("%s: %d row(s) rejected and not used for training: %s", data_path, curated.rejected,
                    curated.reasons)
    t = time.perf_counter()
    split = split_chunks(curated, work / "split", config)
    shutil.rmtree(work / "curated")
    stages["split"] = time.perf_counter() - t
    sha = file_sha256(data_path)
    fp = {"path": data_path.name, "sha256": sha, "data_version": sha[:12], "rows": split.rows,
          "users": split.n_train_users + split.n_valid_users, "items": len(split.items),
          "first_timestamp": str(split.first), "last_timestamp": str(split.last)}
    log.info("data: %d rows, %d users (%s); split by user: %d train users, %d validation users", fp["rows"],
             fp["users"], fp["data_version"], split.n_train_users, split.n_valid_users)

    models = {name: MODELS[name](config.model_config(name)) for name in config.models}
    layouts = tuple(dict.fromkeys(m.layout() for m in models.values() if disk_input(m) == WINDOWS))
    t = time.perf_counter()
    fs = build_features(split, work / "features", config, settings.eval_max_users, settings.feature_workers,
                        matrices=any(disk_input(m) == MATRIX for m in models.values()), layouts=layouts)
    spec, sample = fs.pipeline.spec, fs.sample
    stages.update(fs.seconds)
    shutil.rmtree(work / "split")
    log.info("features: %d columns for %d train + %d validation rows in %.1fs", len(spec.tabular), fs.train_rows,
             fs.valid_rows, time.perf_counter() - t)
    valid = pd.DataFrame({USER: np.concatenate([s[1] for s in sample]),
                          LABEL: np.concatenate([s[2] for s in sample])})
    n_sample_users = int(valid[USER].nunique())
    prepared_seconds = time.perf_counter() - t0  # the members' own time is in theirs
    members = []
    for i, (name, model) in enumerate(models.items(), 1):
        log.info("[%d/%d] training %s out of core", i, len(models), name)
        t = time.perf_counter()
        fit, pred, own = _train_member(model, fs, config.seed, progress)
        info = {"train_seconds": round(fit.seconds, 2), "best_iteration": fit.best_iteration,
                "n_parameters": model.n_parameters(), "history": fit.history,
                "out_of_core": {"train_rows": fs.train_rows, "valid_rows": fs.valid_rows,
                                "validation_users": split.n_valid_users, "metrics_sample_users": n_sample_users,
                                "metrics_sample_rule": f"user_buckets(userID, {EVAL_SALT!r}) < {fs.fraction:.6g}",
                                "chunks": len(split.train) + len(split.valid), "reads": disk_input(model),
                                "stage_seconds": {k: round(v, 2) for k, v in {**stages, **own}.items()}}}
        members.append(Member(name, model, pred, info, time.perf_counter() - t))
    prepared = Prepared(config=config, fingerprint=fp, pipeline=fs.pipeline, train=pd.DataFrame(), valid=valid,
                        n_train_users=split.n_train_users, n_valid_users=split.n_valid_users,
                        train_user_hashes=sorted(split.hashes), seconds=prepared_seconds)
    log.info("validation metrics on %d of %d validation users (hash sample)", n_sample_users, split.n_valid_users)
    return assemble(prepared, members, out_dir)


def _train_member(model: DKTModel, fs: FeatureSet, seed: int, progress: bool) -> tuple[FitResult, np.ndarray,
                                                                                          dict[str, float]]:
    """Fit one member from the chunks on disk; its predictions of the metrics sample's rows, and its stages' seconds."""
    spec, t = fs.pipeline.spec, time.perf_counter()
    if disk_input(model) == MATRIX:
        fit = model.fit_chunks(fs.train, fs.valid, spec, seed=seed, progress=progress)
        t_fit = time.perf_counter() - t
        pred = np.concatenate([model.predict_chunk(c)[rows] for c, (rows, _, _) in zip(fs.valid, fs.sample,
                                                                                          strict=True)])
    else:
        train_chunks, valid_chunks = fs.windows[model.layout()]
        with WindowStore(train_chunks, spec) as tr, WindowStore(valid_chunks, spec) as va:
            fit = model.fit_windows(tr, va, spec, seed=seed, progress=progress)
            t_fit = time.perf_counter() - t
            probs = model.predict_store(va)  # frame order: valid chunk k's rows start at va.offsets[k]
            pred = np.concatenate([probs[va.offsets[k] + rows] for k, (rows, _, _) in enumerate(fs.sample)])
    return fit, pred, {f"{model.name}_train": t_fit, f"{model.name}_predict_valid": time.perf_counter() - t - t_fit}


@dataclass
class FeatureSet:
    """The fitted pipeline and the feature chunks on disk (training users: out-of-fold statistics)."""

    pipeline: FeaturePipeline
    train: list[FeatureChunk]  # empty unless matrices were written
    valid: list[FeatureChunk]
    sample: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # per valid chunk: (rows, userIDs, labels) sampled
    fraction: float  # of validation users in the metrics sample (by hash)
    seconds: dict[str, float]
    # per sequence layout: the (train, valid) window chunks, chunk k of valid = chunk k of ``sample``
    windows: dict[SequenceLayout, tuple[list[WindowChunk], list[WindowChunk]]] = field(default_factory=dict)
    train_rows: int = 0
    valid_rows: int = 0


def build_features(split: Split, directory: Path, config: TrainConfig, eval_max_users: int, workers: int = 1, *,
                   matrices: bool = True, layouts: tuple[SequenceLayout, ...] = ()) -> FeatureSet:
    """Fit the pipeline on the training chunks and write every chunk's features under ``directory``: its
    feature matrix (with ``matrices``) and its sequences' rows for each of ``layouts``.

    Pass 1 (statistics) runs here; the per-chunk passes (the scaler's moments, then the chunks' files) run in
    ``workers`` processes, chunks in order: the moments are merged in chunk order, so the result does not
    depend on ``workers`` (tested)."""
    directory.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    pipeline = FeaturePipeline(config.features)
    state = chunked.fit_statistics(pipeline, lambda: (read_chunk(p) for p in split.train))
    moments = chunked.Moments()
    for m in _map(_moments_task, list(enumerate(split.train)), workers, (pipeline, state, None)):
        moments.merge(m)
    pipeline.scaler = moments.scaler()
    t_fit = time.perf_counter() - t
    t = time.perf_counter()
    fraction = min(1.0, eval_max_users / split.n_valid_users)
    tasks = [("train", k, p, directory / f"train_{k:05d}") for k, p in enumerate(split.train)]
    tasks += [("valid", k, p, directory / f"valid_{k:05d}") for k, p in enumerate(split.valid)]
    out = FeatureSet(pipeline, [], [], [], fraction, {}, {layout: ([], []) for layout in layouts})
    for kind, chunk, windows, picked, n in _map(_features_task, tasks, workers,
                                                (pipeline, state, (split.item_test_valid, fraction),
                                                 (matrices, layouts))):
        if chunk is not None:
            (out.train if kind == "train" else out.valid).append(chunk)
        for layout, w in zip(layouts, windows, strict=True):
            out.windows[layout][0 if kind == "train" else 1].append(w)
        if kind == "train":
            out.train_rows += n
        else:
            out.valid_rows += n
            out.sample.append(picked)
    out.seconds = {"features_fit": t_fit, "features_write": time.perf_counter() - t}
    return out


# -- the per-chunk tasks: top-level functions, run in this process or in spawned workers ----------------------
_TASK: dict = {}


def _init_task(pipeline: FeaturePipeline, state: chunked.ChunkedFit, extra: object,
               outputs: tuple[bool, tuple[SequenceLayout, ...]] = (True, ())) -> None:
    """``outputs``: (write the feature matrices, the sequence layouts whose windows to write)."""
    _TASK.update(pipeline=pipeline, state=state, extra=extra, outputs=outputs)


def _map(fn, items: list, workers: int, initargs: tuple):
    """``fn`` over ``items`` in order, in ``workers`` processes (spawned: pyarrow's threads and fork do not mix).
    Fewer than two items per worker run here: starting a worker (imports) costs about as much as a chunk."""
    if workers <= 1 or len(items) < 2 * workers:
        _init_task(*initargs)
        try:
            yield from map(fn, items)
        finally:
            _TASK.clear()
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_task,
                             initargs=initargs) as pool:
        yield from pool.map(fn, items)


def _moments_task(item: tuple[int, Path]) -> chunked.Moments:
    k, path = item
    return chunked.train_moments(_TASK["pipeline"], _TASK["state"], read_chunk(path), k)


def _features_task(item: tuple[str, int, Path, Path]) -> tuple[str, FeatureChunk | None, list[WindowChunk],
                                                                 tuple | None, int]:
    """One chunk's files: (kind, its feature matrix or None, its window chunks (one per layout), the metrics
    sample's (rows, userIDs, labels) of a validation chunk, its number of rows)."""
    kind, k, path, stem = item
    pipeline, frame = _TASK["pipeline"], read_chunk(path)
    matrices, layouts = _TASK["outputs"]
    item_test, fraction = _TASK["extra"]
    if kind == "train":
        base, x = chunked.train_matrix(pipeline, _TASK["state"], frame, k)
    else:
        base, x = chunked.matrix(pipeline, frame, item_test)
    chunk = _save(frame, x, stem) if matrices else None
    windows = []
    if layouts:
        features = chunked.frame_of(pipeline, frame, base, x)  # the frame fit_transform / transform would give
        spec = pipeline.spec
        windows = [write_chunk(features, spec, layout, stem.with_name(f"{stem.name}_seq{j}"))
                   for j, layout in enumerate(layouts)]
    picked = None
    if kind == "valid":
        rows = np.flatnonzero(user_buckets(frame[USER], EVAL_SALT) < fraction)
        picked = (rows, frame[USER].to_numpy()[rows], frame[LABEL].to_numpy()[rows])
    return kind, chunk, windows, picked, len(frame)


def _save(frame: pd.DataFrame, x: np.ndarray, stem: Path) -> FeatureChunk:
    """Write a chunk's feature matrix (C order: LightGBM reads rows) and labels."""
    chunk = FeatureChunk(stem.with_suffix(".x.npy"), stem.with_suffix(".y.npy"))
    np.save(chunk.x, np.ascontiguousarray(x, dtype=np.float32))
    np.save(chunk.y, frame[LABEL].to_numpy().astype(np.int8))
    return chunk


