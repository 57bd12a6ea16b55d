"""Replaying data sets through `models/` without Kafka: `persona evaluate`,
`persona evaluate-ads`, data loaders, synthetic streams."""
