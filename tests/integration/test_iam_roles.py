"""The least-privilege S3 policies of the platform's roles (issue 12 item 4): deploy/iam/ingest-policy.json,
trainer-policy.json and deployer-policy.json, rendered for a bucket, each on its own IAM user of a moto server
that enforces IAM. Each role runs its real code with only its policy (ingestion with a quarantined object and
rejected rows; the whole training chain twice, the second time against a champion; packaging and the champion
alias), then everything outside its role is refused: AccessDenied.

moto evaluates actions and resources; it does not evaluate Condition blocks, and it names HeadBucket's
permission ``s3:HeadBucket`` where AWS checks ``s3:ListBucket`` (which the ingest policy grants): that one
moto-only action is added beside the ingest policy (MOTO_HEAD_BUCKET) and nothing else."""

from __future__ import annotations

import io
import json
from pathlib import Path

import botocore.exceptions
import pandas as pd
import pytest

from dkt_core.deploy.s3access import IAM_DIR, policy
from dkt_core.storage.s3 import S3Settings, s3_client
from dkt_core.storage.workspace import Workspace
from tests.iam_moto import IamMoto, iam_moto_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BUCKET, RAW = "dkt-roles-test", "interactions/"
ROLES = ("ingest", "trainer", "deployer")
TINY = {"lgbm": {"num_boost_round": 20, "num_leaves": 7, "min_data_in_leaf": 20, "early_stopping_rounds": 5,
                 "num_threads": 1}}
MOTO_HEAD_BUCKET = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:HeadBucket"], "Resource": [f"arn:aws:s3:::{BUCKET}"]}]}


@pytest.fixture
def roles(tmp_path, monkeypatch) -> tuple[IamMoto, dict[str, Workspace]]:
    """A moto server enforcing IAM, the bucket (made by the admin) and one workspace per role, each with the
    credentials of an IAM user that has only that role's policy."""
    monkeypatch.setenv("DKT_HOME", str(tmp_path / "dkt"))
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    monkeypatch.setenv("DKT_HOLDOUT_FRACTION", "0.25")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)  # only the explicit key pairs below
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    with iam_moto_server() as moto:
        moto.client("s3").create_bucket(Bucket=BUCKET)
        spaces = {}
        for role in ROLES:
            docs = {f"dkt-{role}": policy(f"{role}-policy", BUCKET, RAW)}
            if role == "ingest":
                docs["moto-head-bucket"] = MOTO_HEAD_BUCKET
            key, secret = moto.user(f"dkt-{role}", docs)
            client = s3_client(S3Settings(endpoint_url=moto.url, bucket=BUCKET, region="us-east-1"),
                               access_key=key, secret_key=secret, retries=1)
            spaces[role] = Workspace(client, BUCKET, tmp_path / f"cache-{role}")
        yield moto, spaces


def _csv(frame: pd.DataFrame, extra: str = "") -> bytes:
    from dkt_core.data.validate import to_seed_csv

    buf = io.StringIO()
    to_seed_csv(frame, buf)
    return (buf.getvalue() + extra).encode()


def _logs() -> tuple[pd.DataFrame, pd.DataFrame]:
    from dkt_core.data.simulate import SimulationConfig, simulate

    df = simulate(SimulationConfig(users=120, seed=3, tests=40, tags=20, mean_tests_per_user=8))
    cut = df["Timestamp"].quantile(0.75)
    return df[df["Timestamp"] < cut].reset_index(drop=True), df[df["Timestamp"] >= cut].reset_index(drop=True)


def _refused(what: str, call) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as err:
        call()
    assert err.value.response["Error"]["Code"] in {"AccessDenied", "403"}, what


def _ingest(ws: Workspace, run_id: str) -> dict:
    from dkt_core.ingest import IngestConfig, ingest

    return ingest(IngestConfig(run_id=run_id, prefix=RAW), ws=ws).to_dict()


def _train(ws: Workspace, run_id: str, ingested: dict) -> dict:
    """The training side of dkt_retrain, task by task (the DAG passes these values through XCom)."""
    from dkt_core.retrain.batch import check_batch
    from dkt_core.retrain.evaluation import evaluate_candidates
    from dkt_core.retrain.holdout import prepare_split
    from dkt_core.retrain.live_eval import live_evaluate
    from dkt_core.retrain.report import build_report
    from dkt_core.retrain.scratch import clean_training_scratch
    from dkt_core.retrain.training import assemble_challenger, prepare_training, train_run_member
    from dkt_core.settings import RetrainSettings, load

    settings = load(RetrainSettings)  # what the DAG task reads at the edge
    batch = check_batch(ingested, min_new_rows=1, min_new_users=1, settings=settings, ws=ws)
    assert batch["proceed"], batch["reason"]
    split = prepare_split(batch["data_version"], settings=settings, ws=ws)
    live = live_evaluate(batch["data_version"], batch["parent_version"], new_rows_uri=batch.get("new_rows_uri"),
                         settings=settings, ws=ws)
    jobs = prepare_training(run_id, batch["data_version"], split["train_uri"], ["lgbm"], model_options=TINY, ws=ws)
    for job in jobs:
        train_run_member(job["run_id"], job["model"], ws=ws)
    trained = assemble_challenger(run_id, ["lgbm"], ws=ws)
    cleaned = clean_training_scratch(run_id, settings=settings, ws=ws)  # the DAG's clean_scratch task
    assert cleaned["released"]["released"] and cleaned["released"]["objects"] == 4, cleaned
    evaluation = evaluate_candidates(trained["model_version"], trained["artifact_uri"], split["holdout_uri"],
                                     artifact_sha256=trained.get("artifact_sha256"), settings=settings, ws=ws)
    reported = build_report(run_id, batch["data_version"], batch["parent_version"], evaluation, tolerance=1.0,
                            force=True, new_rows_uri=batch.get("new_rows_uri"), settings=settings, ws=ws)
    return {"batch": batch, "live": live, "trained": trained, "evaluation": evaluation, "reported": reported}


def _promote(ws: Workspace, run_id: str, t: dict) -> dict:
    """The deployer's S3 side: package the artifact (BentoML store) and move the champion alias."""
    from dkt_core.retrain.promote import package_model, set_champion
    from dkt_core.settings import HomeSettings, load

    trained = t["trained"]
    packaged = package_model(trained["model_version"], trained["artifact_uri"],
                             artifact_sha256=trained.get("artifact_sha256"),
                             bentoml_home=load(HomeSettings).bentoml_home, ws=ws)
    return set_champion(run_id, trained["model_version"], trained["artifact_uri"], trained["data_version"],
                        t["evaluation"], {"status": "skipped", "image": None}, t["reported"]["report_uri"],
                        packaged["bentoml_tag"], artifact_sha256=trained.get("artifact_sha256"), ws=ws)


def test_each_role_does_its_work_with_its_policy_and_nothing_else(roles):
    moto, ws = roles
    admin = moto.client("s3")
    initial, later = _logs()
    bad_row = "u-bad,A000000001,A000000000,maybe,not-a-time,1\n"  # rejected row (kept with its reason)
    admin.put_object(Bucket=BUCKET, Key="interactions/date=2020-01-01/a.csv", Body=_csv(initial, bad_row))
    admin.put_object(Bucket=BUCKET, Key="interactions/date=2020-01-01/broken.csv", Body=b"\x00\x01 not a csv")

    # cycle 1: ingest (quarantine + rejected rows), train with no champion, promote
    first = _ingest(ws["ingest"], "run-1")
    assert first["status"] == "ingested" and first["objects_quarantined"] == 1 and first["rows_rejected"] >= 1, first
    assert _ingest(ws["ingest"], "run-1")["replayed"]  # a retry of the same run reads its manifest record
    t1 = _train(ws["trainer"], "run-1", first)
    champion = _promote(ws["deployer"], "run-1", t1)
    assert champion["model_version"] == t1["trained"]["model_version"]

    # cycle 2: new rows; the trainer now reads the champion (live evaluation, evaluation on the hold-out)
    admin.put_object(Bucket=BUCKET, Key="interactions/date=2020-02-01/b.csv", Body=_csv(later))
    second = _ingest(ws["ingest"], "run-2")
    assert second["status"] == "ingested" and second["data_version"] != first["data_version"], second
    t2 = _train(ws["trainer"], "run-2", second)
    assert t2["evaluation"].get("champion"), "the second evaluation compares with the champion"
    assert t2["live"].get("n_scored", 0) > 0, t2["live"]
    assert _promote(ws["deployer"], "run-2", t2)["previous_model_version"] == champion["model_version"]

    keys = {o["Key"] for o in admin.list_objects_v2(Bucket=BUCKET)["Contents"]}
    for prefix in ("archive/", "quarantine/", "curated/", "manifest/", "splits/", "runs/", "models/", "reports/"):
        assert any(k.startswith(prefix) for k in keys), f"no role wrote under {prefix}"
    assert "manifest/ingest.lock" not in keys  # ingestion deleted its lease (its one delete)
    assert not any("/train/" in k for k in keys if k.startswith("runs/"))  # the trainer released its scratch
    assert {"runs/run-1/challenger.json", "runs/run-2/challenger.json"} <= keys

    v2 = t2["trained"]["model_version"]
    artifact = f"models/{v2}/artifact.tar.gz"
    raw = "interactions/date=2020-01-01/a.csv"
    s3 = {role: w.client for role, w in ws.items()}
    refused = {
        "ingest": {
            "move the champion": lambda c: c.put_object(Bucket=BUCKET, Key="models/champion.json", Body=b"{}"),
            "write a raw upload": lambda c: c.put_object(Bucket=BUCKET, Key="interactions/x.csv", Body=b"x"),
            "delete a raw upload": lambda c: c.delete_object(Bucket=BUCKET, Key=raw),
            "delete a curated version": lambda c: c.delete_object(Bucket=BUCKET, Key="curated/LATEST"),
            "read a model": lambda c: c.get_object(Bucket=BUCKET, Key=artifact),
            "write a split": lambda c: c.put_object(Bucket=BUCKET, Key="splits/x", Body=b"x"),
            "write at a lookalike prefix": lambda c: c.put_object(Bucket=BUCKET, Key="curatedx/a", Body=b"x"),
            "create a bucket": lambda c: c.create_bucket(Bucket="dkt-other"),
        },
        "trainer": {
            "move the champion": lambda c: c.put_object(Bucket=BUCKET, Key="models/champion.json", Body=b"{}"),
            "write a curated version": lambda c: c.put_object(Bucket=BUCKET, Key="curated/LATEST", Body=b"v=9"),
            "read a raw upload": lambda c: c.get_object(Bucket=BUCKET, Key=raw),
            "write a raw upload": lambda c: c.put_object(Bucket=BUCKET, Key="interactions/x.csv", Body=b"x"),
            "read the manifest": lambda c: c.get_object(Bucket=BUCKET, Key="manifest/index.json"),
            "delete an artifact": lambda c: c.delete_object(Bucket=BUCKET, Key=artifact),
            "delete a run's challenger record": lambda c: c.delete_object(Bucket=BUCKET,
                                                                          Key="runs/run-2/challenger.json"),
            "delete a split": lambda c: c.delete_object(Bucket=BUCKET, Key=next(k for k in keys
                                                                                if k.startswith("splits/"))),
            "write to the archive": lambda c: c.put_object(Bucket=BUCKET, Key="archive/x", Body=b"x"),
            "create a bucket": lambda c: c.create_bucket(Bucket="dkt-other"),
        },
        "deployer": {
            "replace an artifact": lambda c: c.put_object(Bucket=BUCKET, Key=artifact, Body=b"x"),
            "move last_trained": lambda c: c.put_object(Bucket=BUCKET, Key="models/last_trained.json", Body=b"{}"),
            "write at a champion lookalike": lambda c: c.put_object(Bucket=BUCKET, Key="models/champion.jsonx",
                                                                    Body=b"{}"),
            "delete the champion": lambda c: c.delete_object(Bucket=BUCKET, Key="models/champion.json"),
            "read curated data": lambda c: c.get_object(Bucket=BUCKET, Key="curated/LATEST"),
            "read a split": lambda c: c.get_object(Bucket=BUCKET, Key=next(k for k in keys if k.startswith("splits/"))),
            "read a raw upload": lambda c: c.get_object(Bucket=BUCKET, Key=raw),
            "write a raw upload": lambda c: c.put_object(Bucket=BUCKET, Key="interactions/x.csv", Body=b"x"),
        },
    }
    for role, calls in refused.items():
        for what, call in calls.items():
            _refused(f"{role}: {what}", lambda call=call, client=s3[role]: call(client))
    # nothing of the refused calls happened
    assert admin.get_object(Bucket=BUCKET, Key="models/champion.json")["Body"].read() != b"{}"
    assert admin.get_object(Bucket=BUCKET, Key=raw)["ContentLength"] > 0


def test_the_policies_name_only_the_roles_actions_and_prefixes():
    """The documents as reviewed: exact action sets, no wildcard action, every resource in the bucket, and the
    champion alias writable by the deployer alone."""
    def grants(role: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for st in policy(f"{role}-policy", BUCKET, RAW)["Statement"]:
            assert st["Effect"] == "Allow" and "Condition" not in st and "NotAction" not in st
            for action in st["Action"]:
                assert "*" not in action, (role, action)
                out.setdefault(action, set()).update(st["Resource"])
        return out

    arn = f"arn:aws:s3:::{BUCKET}"
    g = {role: grants(role) for role in ROLES}
    assert {r: set(a) for r, a in g.items()} == {
        "ingest": {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
        "trainer": {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
        "deployer": {"s3:ListBucket", "s3:GetObject", "s3:PutObject"}}
    assert g["ingest"]["s3:DeleteObject"] == {f"{arn}/manifest/ingest.lock"}
    assert g["trainer"]["s3:DeleteObject"] == {f"{arn}/runs/*/train/*"}  # a run's training scratch only
    assert g["deployer"]["s3:PutObject"] == {f"{arn}/models/champion.json"}
    for role in ROLES:
        assert g[role]["s3:ListBucket"] == {arn}
        for resources in g[role].values():
            assert all(r == arn or r.startswith(f"{arn}/") for r in resources)
    assert f"{arn}/{RAW}*" in g["ingest"]["s3:GetObject"]
    assert not any(RAW in r for role in ("trainer", "deployer") for rs in g[role].values() for r in rs)
    assert sorted(p.name for p in Path(IAM_DIR).glob("*.json")) == [
        "client-policy.json", "deployer-policy.json", "ingest-policy.json", "trainer-policy.json"]
    json.loads((Path(IAM_DIR) / "client-policy.json").read_text())
