"""The cluster view shared by ``hongbao console`` and ``hongbao top``: collected from
the admin API and every process's Prometheus /metrics, shown by either UI."""
