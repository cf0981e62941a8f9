"""The new-data sensor's tick reads only the batch that is new (its id from the batch index)."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from mlops_pipeline.data.snapshots import content_id, read_landing
from mlops_pipeline.defs import automation
from mlops_pipeline.defs.definitions import build_definitions
from mlops_pipeline.defs.resources import DatasetResource, StorageResource


def test_the_tick_after_one_new_batch_reads_only_that_batch(data_dir, land, monkeypatch):
    land(months=(1, 2, 3, 4))
    resources = {"dataset": DatasetResource(), "storage": StorageResource(root=str(data_dir))}
    folder = data_dir / "landing" / "flights"
    defs = build_definitions()

    def tick(instance, cursor):
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources,
                                          definitions=defs)
        return automation.new_data_sensor.evaluate_tick(context)

    opened: list[str] = []
    real = pd.read_parquet

    def counting(path, *args, **kwargs):
        opened.append(str(path))
        return real(path, *args, **kwargs)

    with dg.DagsterInstance.ephemeral() as instance:
        first = tick(instance, None)
        assert len(first.run_requests) == 1
        monkeypatch.setattr(pd, "read_parquet", counting)
        land(months=(5,))
        new = tick(instance, first.cursor)
        assert opened == [str(folder / "flights_2013_05.parquet")]
        monkeypatch.setattr(pd, "read_parquet", real)
        assert len(new.run_requests) == 1
        assert new.run_requests[0].run_key == content_id(read_landing(str(folder / "*.parquet"), "parquet"))
        assert new.run_requests[0].run_key != first.run_requests[0].run_key
