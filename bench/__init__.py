"""Benchmarks against peers, measured in one run."""
