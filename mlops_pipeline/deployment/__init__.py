"""Stage 3 of the loop, without Dagster: THE eval gate, the registry and its aliases, promotion, release
analysis on live traffic, and every tag key and role name (`tags.py`)."""
