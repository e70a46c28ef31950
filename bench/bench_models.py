"""Benchmark every registered model on a real log: parameters, training time, AUCs, inference latency.

Protocol (user-level, nothing shared between parts): 20% of users are the test set; of the rest, 10%
of users are the validation set (early stopping and the ensemble's weights), the others train. The
FeaturePipeline is fit on the training users only. Reported AUCs are on the test users: all-item (every
labelled row from its own past) and last-item (each user's last row from the rest of the history).

    OMP_WAIT_POLICY=PASSIVE python bench/bench_models.py --data ../shared/data/assist2009_dev.csv.gz \
        --models lgbm,lstm,lstm_attn,bert,saint [--set lstm.max_epochs=5] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch/lightgbm load OpenMP

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from dkt_core.data.columns import LABEL, USER  # noqa: E402
from dkt_core.evaluation.metrics import accuracy, auc  # noqa: E402
from dkt_core.features.spec import FeatureSpec  # noqa: E402
from dkt_core.models import MODELS  # noqa: E402
from dkt_core.training.ensemble import SoftVoteEnsemble  # noqa: E402


def split_users(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    users = np.random.default_rng(seed).permutation(np.asarray(frame[USER].unique(), dtype=object))
    n_test = int(0.2 * len(users))
    n_valid = int(0.1 * (len(users) - n_test))
    parts = users[:n_test], users[n_test:n_test + n_valid], users[n_test + n_valid:]
    train, valid, test = (frame[frame[USER].isin(set(p))].reset_index(drop=True) for p in parts[::-1])
    return train, valid, test


def synthetic_features(n_users: int, seed: int) -> tuple[pd.DataFrame, FeatureSpec]:
    """A feature frame shaped like the pipeline's output on assist2009_dev (same columns, cardinalities and
    rows per user), for timing where the real data and the pipeline's dependencies are absent (GPU box)."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.geometric(1 / 67, n_users), 2000)
    n = int(lengths.sum())
    cards = {"item": 15867, "test": 138, "tag": 103, "head": 3, "mid": 138, "tail": 3, "mid_tail": 138,
             "elapsed_bin": 604, "prev_answer": 4}
    cols = {USER: np.repeat(np.arange(n_users), lengths), LABEL: rng.integers(0, 2, n)}
    cols.update({c: rng.integers(1, k, n) for c, k in cards.items()})
    numeric = [f"num{i}" for i in range(34)]
    cols.update({c: rng.normal(size=n).astype(np.float32) for c in numeric})
    return pd.DataFrame(cols), FeatureSpec(categorical=cards, numeric=numeric, tabular=numeric)


def aucs(frame: pd.DataFrame, p: np.ndarray) -> dict[str, float]:
    known = frame[LABEL].to_numpy() >= 0
    y = frame[LABEL].to_numpy()
    last = ~frame[USER].duplicated(keep="last").to_numpy() & known
    return {"auc_all": auc(y[known], p[known]), "auc_last": auc(y[last], p[last]), "acc_last": accuracy(y[last], p[last])}


def latency_ms(model, frame: pd.DataFrame, n_users: int, length: int, repeats: int = 20) -> float:
    """Median milliseconds of predict_proba on ``n_users`` histories of ``length`` rows (feature frame)."""
    counts = frame.groupby(USER).size()
    users = counts[counts >= length].index[:n_users]
    if len(users) < n_users:  # not enough long users: reuse them under new ids
        users = np.resize(np.asarray(users), n_users)
    parts = [frame[frame[USER] == u].iloc[:length].assign(**{USER: f"b{i}"}) for i, u in enumerate(users)]
    batch = pd.concat(parts, ignore_index=True)
    model.predict_proba(batch)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.predict_proba(batch)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def parse_overrides(items: list[str]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for item in items:
        key, _, value = item.partition("=")
        model, _, field = key.partition(".")
        if not field:
            raise SystemExit(f"--set expects MODEL.FIELD=VALUE, got {item!r}")
        out.setdefault(model, {})[field] = json.loads(value) if value[:1] in "[{0123456789-tf" else value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a log file, or synthetic:USERS (timing only)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], help="MODEL.FIELD=VALUE config override")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--save-preds", help="write labels, users and every member's validation/test predictions "
                                         "to this .npz (to study blending without retraining)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)

    t0 = time.perf_counter()
    if args.data.startswith("synthetic:"):  # timing only: random labels, AUCs mean nothing
        raw, spec = synthetic_features(int(args.data.split(":")[1]), args.seed)
        train, valid, test = split_users(raw, args.seed)
    else:
        from dkt_core.data.validate import load_interactions
        from dkt_core.features.pipeline import FeaturePipeline

        raw = load_interactions(args.data)
        train_raw, valid_raw, test_raw = split_users(raw, args.seed)
        pipe = FeaturePipeline()
        train = pipe.fit_transform(train_raw)
        valid, test = pipe.transform(valid_raw), pipe.transform(test_raw)
        spec = pipe.spec
    print(f"data: {len(raw)} rows; train/valid/test users {train[USER].nunique()}/{valid[USER].nunique()}/"
          f"{test[USER].nunique()}; features {time.perf_counter() - t0:.1f}s; device "
          f"{'cuda' if torch.cuda.is_available() else 'cpu'}; torch threads {torch.get_num_threads()}")

    results, valid_preds, test_preds = {}, {}, {}
    for name in args.models.split(","):
        cls = MODELS[name]
        known = {f.name for f in dataclasses.fields(cls.Config)}
        opts = overrides.get(name, {})
        bad = set(opts) - known
        if bad:
            raise SystemExit(f"unknown option(s) {sorted(bad)} for {name}")
        model = cls(cls.Config(**opts))
        fit = model.fit(train, valid, spec, seed=args.seed, progress=False)
        valid_preds[name] = model.predict_proba(valid)
        test_preds[name] = model.predict_proba(test)
        torch.set_num_threads(args.threads)
        r = {"params": model.n_parameters(), "train_s": round(fit.seconds, 1), "best_epoch": fit.best_iteration,
             "valid_auc": round(fit.valid_auc or float("nan"), 4), **aucs(test, test_preds[name]),
             "latency_1x200_ms": latency_ms(model, test, 1, 200), "latency_64x200_ms": latency_ms(model, test, 64, 200, 5)}
        results[name] = r
        print(name, json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}), flush=True)

    vk = valid[LABEL].to_numpy() >= 0
    ens = SoftVoteEnsemble.fit({n: p[vk] for n, p in valid_preds.items()}, valid[LABEL].to_numpy()[vk])
    results["ensemble"] = {"weights": {k: round(v, 3) for k, v in ens.weights.items()},
                           **aucs(test, ens.predict(test_preds))}
    print("ensemble", json.dumps(results["ensemble"]))
    print(f"total {time.perf_counter() - t0:.0f}s")
    if args.save_preds:
        np.savez_compressed(args.save_preds, valid_y=valid[LABEL].to_numpy(), test_y=test[LABEL].to_numpy(),
                            valid_user=valid[USER].to_numpy().astype(str), test_user=test[USER].to_numpy().astype(str),
                            **{f"valid_{n}": p for n, p in valid_preds.items()},
                            **{f"test_{n}": p for n, p in test_preds.items()})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
