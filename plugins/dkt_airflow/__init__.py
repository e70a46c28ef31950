"""Airflow-only glue for the dkt DAGs (Airflow puts plugins/ on sys.path, so DAGs import
``dkt_airflow``). Keep this light: no pandas/torch/boto3 at import time, the DAG processor parses
DAG files often."""
