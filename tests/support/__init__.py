"""The test bed, its invariants, the IAM cross-check and the other helpers the tests share."""
