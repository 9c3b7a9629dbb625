"""Where a run is hosted: the plain and durable Lambda functions, the CLI, hand-off, status and cancel."""
