"""Monitoring computations without Dagster: estimation of performance before labels arrive."""
