"""dkt_core: data contract, features, models, training, evaluation, packaging and deployment steps
of the dkt-platform continuous-training loop. Importable and testable without Airflow."""

__version__ = "0.1.0"
