"""Online serving (no Dagster): a FastAPI process that answers with the registry's champion,
captures every answer, and can put the challenger in shadow or canary.

Read in the order a request travels:
  settings   the knobs (`MLOPS_SERVE_*`, CLI flags), exposure rules, credential masking
  app        routes wired in one place, one error handler (`error_response`), token and body limit
  server     one process's parts and lifecycle; what /health, /ready, /feedback, /admin/* answer
  scoring    the /predict path without HTTP: routing (champion, canary), micro-batches, unseen
             categories, shadow, capture
  inputs     request body -> contract-typed records -> a contract-validated frame
  errors     what a client is told when a request is refused (status, fields at fault)
  isolation  the request at fault when a model call raises (422) versus a broken model (500)
  loader     registered versions loaded, warmed up and swapped atomically as aliases move
  batching, capture, responses, metrics, openapi   the micro-batcher, group commit, answer
             encoding, Prometheus metrics, declared request bodies
  run, workers   `serve`: one process, or N workers on one port under a supervisor; the state file
"""
