"""The run's data: the request and the carry-on event, settings, the report, errors. No boto3."""
