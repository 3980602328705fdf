"""``hongbao demo``: the red-envelope story told on a live local cluster."""
