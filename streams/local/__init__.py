"""The local rig: the Apache Kafka broker, worker processes, a Prometheus server and the
chaos driver, used by the demo, the tests and the benchmarks (never by the worker)."""
