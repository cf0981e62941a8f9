"""Worked examples of the loop's extension points (importable as `examples.*` from the project)."""
