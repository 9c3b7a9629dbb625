"""One service's recycle by stage: selection, preflight, budget, gates, capacity, watch, batches, engine."""
