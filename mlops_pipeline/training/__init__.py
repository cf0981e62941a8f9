"""Stage 2 of the loop, without Dagster: the model pipeline, its fit, the metric catalogue, the run
manifest and `reproduce`."""
