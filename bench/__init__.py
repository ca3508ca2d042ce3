"""The benchmarks: ``python -m bench`` (docs/performance.md)."""
