"""Stage 4 of the loop, without Dagster: THE drift computation, quality and skew, performance estimated
before labels, the labeling queue, the board, and the prediction store (`predictions/`)."""
