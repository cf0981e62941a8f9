"""Every per-segment verdict (`deployment.segments.SegmentReport`) shown the same way in Dagster:
one table, one line per segment, worst first — the gate's `segment_regression`, production's
`segment_quality` and the estimate's `estimated_segment_quality` alike (and what a board panel of
the worst segments can read)."""

import dagster as dg

COLUMNS = [("segment", "string"), ("column", "string"), ("value", "string"), ("rows", "int"),
           ("candidate", "float"), ("champion", "float"), ("difference", "float"),
           ("low", "float"), ("high", "float"), ("verdict", "string")]


def segment_table(report) -> dg.TableMetadataValue:
    """`report.records()` as a Dagster table, worst first; `champion` is empty against a fixed
    line (production), where `candidate` is the segment's figure."""
    worst = {r.segment: i for i, r in enumerate(report.worst(len(report.rows)))}
    records = sorted(report.records(), key=lambda r: worst[r["segment"]])
    return dg.MetadataValue.table(
        records=[dg.TableRecord({k: r[k] for k, _ in COLUMNS}) for r in records],
        schema=dg.TableSchema(columns=[dg.TableColumn(k, t) for k, t in COLUMNS]),
    )
