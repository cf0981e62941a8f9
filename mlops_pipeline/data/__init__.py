"""Stage 1 of the loop, without Dagster: files landed, snapshotted by content, checked by the contract,
prepared into a labelled, split frame."""
