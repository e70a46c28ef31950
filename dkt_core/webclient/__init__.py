"""Student web client: a Flask quiz app served by gunicorn.

Students and teachers sign up and log in; students answer items from a question bank built from the
training data; each answer is graded against the bank's secret answer key, recorded under the account's
userID, written to a durable local spool and flushed to S3 in the seed format, and the page
shows the inference service's prediction for the next item and a per-tag knowledge view.

Modules: ``settings`` (environment), ``bank`` (question bank + answer key), ``spool`` (durable local
batches), ``flusher`` (spool -> S3), ``history`` (per-student progress), ``accounts`` (accounts, classes,
login sessions), ``ratelimit`` (rate-limit counters shared by workers), ``inference`` (HTTP client of the
BentoML service), ``app`` (Flask app factory), ``wsgi`` (gunicorn entry point).
"""
