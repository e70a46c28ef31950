"""Evaluation metrics: AUC / log loss / accuracy (all-item and last-item) with user-level bootstrap
intervals, in one dependency-free module (``metrics``) that every layer from the models up may use.

Scoring a trained artifact on a file is ``dkt_core.predict.evaluate``, beside the ``Predictor`` it uses.
"""
