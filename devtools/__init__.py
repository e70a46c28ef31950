"""Development tools for tests and benchmarks: the load generator, the service launcher and the port helper.

Not part of the shipped package (pyproject's ``packages.find`` includes ``dkt_core*`` only, and
tests/unit/test_devtools.py checks it): pytest puts the repository root on ``sys.path`` (``pythonpath``)
and the bench scripts insert it themselves. Nothing in ``dkt_core`` imports this package.
"""
