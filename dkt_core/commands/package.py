"""`dkt package` (trained artifact -> BentoML model `dkt-model:<version>`) and `dkt serve`."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

SERVICE_DIR = Path(__file__).resolve().parents[2] / "bento_service"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("package", help="store a trained artifact as the BentoML model dkt-model:<model_version>")
    p.add_argument("--model", type=Path, help="artifact directory written by `dkt train`")
    p.add_argument("--list", action="store_true", help="list packaged dkt models, newest first")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_package)

    from dkt_core.settings import ServingSettings, load

    serving = load(ServingSettings)
    s = sub.add_parser("serve", help="serve a packaged model with `bentoml serve` (bento_service/)")
    s.add_argument("--tag", default=serving.model_tag or "",
                   help="dkt-model:<version> (default: the most recently packaged)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (loopback unless you mean to expose it)")
    s.add_argument("--port", type=int, default=serving.port, help="port to listen on (DKT_SERVE_PORT)")
    s.add_argument("--workers", type=int, default=serving.workers, help="BentoML API workers (DKT_SERVE_WORKERS)")
    s.set_defaults(func=cmd_serve)


def cmd_package(args: argparse.Namespace) -> int:
    from dkt_core.packaging import artifact_models, list_packaged, package_artifact

    if args.list:
        models = list_packaged()
        if args.json:
            print(json.dumps([{"tag": m.tag, **{k: m.metadata.get(k) for k in
                                                ("model_version", "data_version", "trained_at", "models")}}
                              for m in models]))
        else:
            for m in models:
                print(f"{m.tag}  data={m.metadata.get('data_version')}  trained_at={m.metadata.get('trained_at')}"
                      f"  models={','.join(artifact_models(m.metadata))}")
        return 0
    if args.model is None:
        raise ValueError("give --model DIR (an artifact from `dkt train`) or --list")
    packaged = package_artifact(args.model)
    if args.json:
        print(json.dumps({"tag": packaged.tag, "path": str(packaged.path), "metadata": packaged.metadata}))
    else:
        print(packaged.tag)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from dkt_core.packaging import resolve_tag

    tag = resolve_tag(args.tag or None)
    bentoml = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or "bentoml"
    env = {**os.environ, "DKT_MODEL_TAG": tag, "DKT_SERVE_WORKERS": str(args.workers)}
    print(f"serving {tag} on http://{args.host}:{args.port}", file=sys.stderr)
    os.chdir(SERVICE_DIR)
    os.execvpe(bentoml, [bentoml, "serve", "service:DKTService", "--host", args.host, "--port", str(args.port)], env)
