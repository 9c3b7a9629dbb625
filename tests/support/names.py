"""The simulated cluster's names, shared by the bed, its invariants and the tests."""

CLUSTER = "demo-cluster"
SERVICE = "web"
