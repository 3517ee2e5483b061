"""The stages users run: train, export, verify, bench (with tune), predict, info, doctor, distributed."""
