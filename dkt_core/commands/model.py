"""`dkt train`, `dkt evaluate`, `dkt predict`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dkt_core.settings import ReadLimits


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train models and write a self-contained artifact directory")
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--models", default="lgbm", help="comma-separated registry names, e.g. lgbm,lstm,bert")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--valid-frac", type=float, default=0.2)
    t.add_argument("--data-version", default=None, help="record this data version (default: file hash)")
    t.add_argument("--option", action="append", default=[], metavar="MODEL.KEY=VALUE",
                   help="override a model config field (JSON value), e.g. lstm.max_epochs=3")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score an artifact on a file of unseen users")
    e.add_argument("--model", type=Path, required=True)
    e.add_argument("--data", type=Path, required=True)
    e.add_argument("--json", action="store_true")
    e.add_argument("--bootstrap", type=int, default=100, help="bootstrap replicates for the CIs")
    e.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict every row with answerCode -1 from the rows before it")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_predict)


def parse_options(items: list[str]) -> dict[str, dict]:
    options: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        model, dot, field = key.partition(".")
        if not sep or not dot:
            raise ValueError(f"--option {item!r} must look like MODEL.FIELD=VALUE, e.g. lgbm.num_boost_round=200")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        options.setdefault(model, {})[field] = parsed
    return options


def cmd_train(args: argparse.Namespace) -> int:
    from dkt_core.training.config import TrainConfig
    from dkt_core.training.trainer import train

    config = TrainConfig(models=[m.strip() for m in args.models.split(",") if m.strip()], seed=args.seed,
                         valid_frac=args.valid_frac, model_options=parse_options(args.option),
                         data_version=args.data_version)
    out = train(args.data, args.out, config, progress=not args.quiet, limits=ReadLimits.from_env())
    metrics = json.loads((out / "metrics.json").read_text())["validation"]
    for name, m in metrics.items():
        print(f"{name:>10}: {_fmt(m)}")
    print(f"artifact written to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from dkt_core.predict.evaluate import evaluate_artifact

    report = evaluate_artifact(args.model, args.data, n_boot=args.bootstrap, limits=ReadLimits.from_env())
    if args.json:
        print(json.dumps(report))
        return 0
    for name, m in report["members"].items():
        print(f"{name:>10}: {_fmt(m)}")
    print(f"  ensemble: {_fmt(report)} on {report['n_users']} users (95% CI of auc_all: {report['auc_all_ci95']})")
    return 0


def _fmt(m: dict) -> str:
    return " ".join(f"{k}={m[k]:.4f}" if m.get(k) is not None else f"{k}=n/a"
                    for k in ("auc_all", "auc_last", "acc_last"))


def cmd_predict(args: argparse.Namespace) -> int:
    from dkt_core.predict.evaluate import predict_file

    n = predict_file(args.model, args.data, args.out, limits=ReadLimits.from_env())
    print(f"wrote {n} predictions to {args.out}", file=sys.stderr)
    return 0
