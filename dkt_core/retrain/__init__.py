"""The non-Airflow steps of the retraining loop, one small typed function per DAG task.

Every step reads its inputs from S3 (ids/URIs in, ids/URIs out), returns a JSON-able dict for XCom and
is idempotent: a retry or a rerun of the same run id finds what an earlier attempt wrote and reuses it.

    holdout.prepare_split      curated version -> train users / fixed hold-out users (splits/v=N/)
    live_eval.live_evaluate    the serving champion scored on the newly ingested rows (reports/live_auc.json)
    training.train_challenger  train users -> artifact (models/<model_version>/artifact.tar.gz)
    evaluation.evaluate_candidates  challenger and champion on the same hold-out
    report.build_report        run report (metrics, ROC/calibration, data quality, drift, live-AUC trend)
    gate.decide                promote or keep the champion, with the reason
    promote.package_model / deploy_model / set_champion   BentoML model, image + Swarm rollout, alias
"""

from dkt_core.retrain.settings import RetrainSettings

__all__ = ["RetrainSettings"]
