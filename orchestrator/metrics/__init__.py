"""Prometheus metrics of the workers and the watcher (the API's own are api/metrics.py).

`labels.py` keeps label values few (reason classes, a cap on names),
`registry.py` defines every metric and the calls that record them (built on
first use: nothing is created at import), `server.py` serves them from a
worker's or the watcher's entry point.
"""
