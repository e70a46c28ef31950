"""`dkt train`, `dkt evaluate`, `dkt predict`."""

from __future__ import annotations

import argparse
import json
import sys
from inspect import cleandoc
from pathlib import Path

from dkt_core.settings import ReadLimits


def register(sub: argparse._SubParsersAction) -> None:
    """The three commands; each one's description is its function's docstring (`dkt X --help` shows it)."""
    t = sub.add_parser("train", help="train models and write a self-contained artifact directory",
                       description=cleandoc(cmd_train.__doc__))
    t.add_argument("--data", type=Path, required=True, help="training log: CSV, CSV.gz or Parquet in the seed format")
    t.add_argument("--models", default="lgbm", help="comma-separated registry names, e.g. lgbm,lstm,bert")
    t.add_argument("--out", type=Path, required=True,
                   help="artifact directory to create; an existing artifact is refused unless --force")
    t.add_argument("--force", action="store_true", help="replace an existing artifact at --out")
    t.add_argument("--seed", type=int, default=0, help="random seed (split salt, model initialisation)")
    t.add_argument("--valid-frac", type=float, default=0.2,
                   help="fraction of users held out for early stopping and the ensemble weights")
    t.add_argument("--data-version", default=None, help="record this data version (default: file hash)")
    t.add_argument("--option", action="append", default=[], metavar="MODEL.KEY=VALUE",
                   help="override a model config field (JSON value), e.g. lstm.max_epochs=3; repeatable")
    t.add_argument("--quiet", action="store_true", help="no progress bars (the per-epoch lines stay)")
    t.add_argument("--out-of-core", choices=("auto", "always", "never"), default="auto",
                   help="train from chunks on disk (for logs larger than memory; sequence models read their windows "
                        "from disk). auto: a Parquet log "
                        "of at least DKT_TRAIN_OUT_OF_CORE_ROWS rows; a CSV needs always (docs/models.md)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score an artifact on a file of unseen users", description=cleandoc(cmd_evaluate.__doc__))
    e.add_argument("--model", type=Path, required=True, help="artifact directory written by `dkt train`")
    e.add_argument("--data", type=Path, required=True, help="evaluation log in the seed format (unseen users)")
    e.add_argument("--json", action="store_true", help="one JSON object on stdout, full precision")
    e.add_argument("--bootstrap", type=int, default=100, help="bootstrap replicates for the CIs")
    e.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict every row with answerCode -1 from the rows before it",
                       description=cleandoc(cmd_predict.__doc__))
    p.add_argument("--model", type=Path, required=True, help="artifact directory written by `dkt train`")
    p.add_argument("--data", type=Path, required=True, help="log in the seed format; rows with answerCode -1 are "
                                                            "predicted from the user's earlier rows")
    p.add_argument("--out", type=Path, required=True, help="CSV to write (line,userID,assessmentItemID,Timestamp,"
                                                           "prediction)")
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
    """Validate the log (bad rows are dropped with a warning), split it by user into train and validation users,
    train each model, fit the soft-vote ensemble on the validation users and write the artifact directory. One
    summary line per epoch (epoch, train loss, validation AUC) is logged for sequence models."""
    from dkt_core.training.artifact import MANIFEST
    from dkt_core.training.config import TrainConfig
    from dkt_core.training.trainer import train

    is_artifact = (args.out / MANIFEST).is_file()
    if is_artifact and not args.force:
        raise ValueError(f"{args.out} already holds a trained artifact; choose another --out or add --force "
                         "to replace it")
    if args.out.exists() and not is_artifact and (not args.out.is_dir() or any(args.out.iterdir())):
        # --force replaces an artifact only: never delete a directory the trainer did not write
        raise ValueError(f"{args.out} exists and is not an artifact directory; choose another --out "
                         "(or remove it yourself)")
    config = TrainConfig(models=[m.strip() for m in args.models.split(",") if m.strip()], seed=args.seed,
                         valid_frac=args.valid_frac, model_options=parse_options(args.option),
                         data_version=args.data_version)
    if is_artifact:  # --force: a fresh directory, no member of the old artifact survives
        import shutil

        shutil.rmtree(args.out)
    from dkt_core.settings import TrainSettings
    from dkt_core.training.stream import should_stream, train_out_of_core

    limits, settings = ReadLimits.from_env(), TrainSettings.from_env()
    if should_stream(args.data, args.out_of_core, settings):
        out = train_out_of_core(args.data, args.out, config, settings=settings, progress=not args.quiet)
    else:
        out = train(args.data, args.out, config, progress=not args.quiet, limits=limits)
    metrics = json.loads((out / "metrics.json").read_text())["validation"]
    for name, m in metrics.items():
        print(f"{name:>10}: {_fmt(m)}")
    print(f"artifact written to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """AUC, accuracy and log loss of the ensemble and each member on a log of users the model has not seen, with
    bootstrap 95 percent intervals over users. Warns (stderr and the JSON field 'warnings') when the file is the
    training file or its users overlap the training users: such numbers overstate the model."""
    from dkt_core.predict.evaluate import evaluate_artifact
    from dkt_core.training.trainer import training_overlap

    report = evaluate_artifact(args.model, args.data, n_boot=args.bootstrap, limits=ReadLimits.from_env())
    report["warnings"] = training_overlap(args.model, args.data, limits=ReadLimits.from_env())
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
        return 0
    for name, m in report["members"].items():
        print(f"{name:>10}: {_fmt(m)}")
    ci = report.get("auc_all_ci95") or [None, None]
    print(f"  ensemble: {_fmt(report)} on {report['n_users']} users, {report['n_rows']} rows "
          f"(95% CI of auc_all: {_num(ci[0])} to {_num(ci[1])})")
    return 0


def _num(value: float | None) -> str:
    """Four decimals for people (--json keeps full precision)."""
    return "n/a" if value is None else f"{value:.4f}"


def _fmt(m: dict) -> str:
    return " ".join(f"{k}={_num(m.get(k))}" for k in ("auc_all", "auc_last", "acc_last"))


def cmd_predict(args: argparse.Namespace) -> int:
    """Writes one CSV row per row to predict: its input line (header = line 1), userID, assessmentItemID,
    Timestamp and the predicted probability of a correct answer, so repeated items can be matched back to their
    rows."""
    from dkt_core.predict.evaluate import predict_file

    n = predict_file(args.model, args.data, args.out, limits=ReadLimits.from_env())
    print(f"wrote {n} predictions to {args.out}", file=sys.stderr)
    return 0
