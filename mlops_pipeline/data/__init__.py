"""The data layer: per-batch and overall data checks (the contract and snapshots move here in time)."""
