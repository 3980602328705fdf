"""Prometheus metrics of hongbao processes.

Rules of this package: each process owns one :class:`prometheus_client.CollectorRegistry`
(never the library's global one, so two nodes in one test process never mix their
figures) and serves it with :func:`start_metrics_server` on the topology's host and
``metrics_port``. Metric names and labels are a contract read by the console and the
dashboards: change them only with both.
"""

from hongbao.metrics.server import MetricsServer as MetricsServer
from hongbao.metrics.server import start_metrics_server as start_metrics_server

__all__ = ["MetricsServer", "start_metrics_server"]
