"""Student web client: a Flask quiz app served by gunicorn.

Students answer items from a question bank built from the training data; each answer is graded against
the bank's answer key, written to a durable local spool and flushed to S3 in the seed format, and the page
shows the inference service's prediction for the next item and a per-tag knowledge view.

Modules: ``settings`` (environment), ``bank`` (question bank + answer key), ``spool`` (durable local
batches), ``flusher`` (spool -> S3), ``history`` (per-student progress), ``inference`` (HTTP client of the
BentoML service), ``app`` (Flask app factory), ``wsgi`` (gunicorn entry point).
"""
