"""CLI: `python -m dkt_core.deploy deploy [--model DIR | --tag dkt-model:<v>]` | `undeploy` | `client-image`
(what make deploy, make undeploy and make client-image run). Exit 0 when the asked model serves (also
when it already ran), 1 when the deploy failed, 2 on a usage error."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dkt_core.deploy")
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("deploy", help="build, push and roll out one model (default: the newest packaged)")
    what = d.add_mutually_exclusive_group()
    what.add_argument("--model", type=Path, help="artifact directory from `dkt train`: packaged (idempotent) "
                      "and deployed as dkt-model:<its own model_version>")
    what.add_argument("--tag", help="dkt-model:<version> in the BentoML store")
    sub.add_parser("undeploy", help="remove the Swarm stack")
    sub.add_parser("client-image", help="build and push the web client image; prints it (for DKT_CLIENT_IMAGE)")
    sub.add_parser("client-s3-credentials", help="create the web client's IAM user (PutObject under the raw prefix "
                   "only: deploy/iam/client-policy.json) with the deployer's credentials and write its key to "
                   "DKT_CLIENT_S3_CREDENTIALS_FILE (0600)")
    args = parser.parse_args(argv)

    from dkt_core.deploy.images import ImageError
    from dkt_core.deploy.pipeline import deploy, undeploy
    from dkt_core.settings import DeploySettings, HomeSettings, ServingSettings, load

    try:
        settings = load(DeploySettings)  # the edge: read once, passed down
        if args.cmd == "undeploy":
            undeploy(settings)
            return 0
        if args.cmd == "client-image":
            print(client_image())
            return 0
        if args.cmd == "client-s3-credentials":
            print(client_s3_credentials())
            return 0
        outcome = deploy(args.tag, model=args.model, settings=settings, home=load(HomeSettings).bentoml_home,
                         keys_file=load(ServingSettings).api_keys_file)
    except ValueError as exc:  # PackagingError too: no artifact, unknown tag, empty store
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    except (ImageError, TimeoutError) as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    print(f"{'already running' if outcome.unchanged else 'served version'}: {outcome.served_version}  "
          f"image: {outcome.image}")
    return 0 if outcome.ok else 1


def client_s3_credentials() -> str:
    import boto3

    from dkt_core.deploy.s3access import make_client_credentials
    from dkt_core.deploy.settings import DeploySettings
    from dkt_core.settings import AirflowSettings, S3Settings, load

    s3, deploy = load(S3Settings), DeploySettings.from_env()
    iam = boto3.client("iam", endpoint_url=s3.endpoint_url, region_name=s3.region)
    path = make_client_credentials(iam, s3.bucket, deploy.client_s3_credentials, load(AirflowSettings).raw_prefix)
    print(f"web client S3 credentials (PutObject on {s3.bucket}/{load(AirflowSettings).raw_prefix}* only) written "
          f"to {path} (0600); the next deploy ships them as a Docker secret", file=sys.stderr)
    return str(path)


def client_image() -> str:
    from dkt_core.deploy.images import push_image
    from dkt_core.deploy.s3access import registry_login
    from dkt_core.deploy.settings import DeploySettings
    from dkt_core.deploy.stack import build_client_image

    settings = DeploySettings.from_env()
    # the CA bundle (DKT_BUILD_CA_BUNDLE) only behind a TLS-intercepting proxy
    image, built = build_client_image(settings, settings.build_ca_bundle)
    registry_login(settings)
    push_image(image)
    print(f"client image built in {built.seconds:.0f}s and pushed; export DKT_CLIENT_IMAGE={image}", file=sys.stderr)
    return image


if __name__ == "__main__":
    sys.exit(main())
