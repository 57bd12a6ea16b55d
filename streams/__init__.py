"""persona's I/O side: Faust agents, Kafka topics, HTTP views, Prometheus metrics, CLI."""

__version__ = "0.1.0"
