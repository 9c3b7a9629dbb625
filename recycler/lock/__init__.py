"""The lock: its record, its DynamoDB store, and the lease a run holds."""
