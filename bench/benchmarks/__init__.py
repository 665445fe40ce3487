"""The scenario matrix under pytest-benchmark: ``pytest bench/benchmarks --benchmark-only``."""
