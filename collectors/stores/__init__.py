"""Metric-store adapters behind the ``MetricStore`` port (``collectors.query``); open them with
``collectors.registry.open_store``."""
