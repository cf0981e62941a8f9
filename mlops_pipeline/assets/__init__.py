"""The loop's assets in the order the data flows: dataset -> features -> training -> registry ->
monitoring. Each module holds one stage's assets and, beside them, the checks that guard them."""
