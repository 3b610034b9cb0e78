"""Experiments: scenario variants, bandit allocation and their counters."""
