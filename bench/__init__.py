"""Benchmarks for qbo-connect: `make bench` (python -m bench) prints a table and writes docs/performance.md.

These measure; they are not tests. Each module runs on its own too (python -m bench.cold_start, ...).
"""
