"""Benchmarks of langchain-fusion against the physical limit and against bare code.

Run with `make bench` (or `python -m bench.run --help`); results go to
`bench/results/latest.json` and a table on the terminal. See `docs/benchmarks.md`.
"""
