"""What several stages measure with, below the stages and above the runners: latency statistics (`timing`), peak
memory in a child process (`memory`) and the parity bounds each precision is held to (`thresholds`). Export, verify,
bench, tune and selftest import these, never each other, for them."""
