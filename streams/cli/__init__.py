"""The `persona` command and the operator tools: demo, top, report, replay, exchange
simulator. May import the worker's modules, `streams.offline` and `streams.local`."""
