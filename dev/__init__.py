"""Development only: the simulated ECS cluster, the demo and the benchmark. Never packaged."""
