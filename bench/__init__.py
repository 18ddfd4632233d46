"""Benchmarks of the connect service: `make bench` (see bench/README.md)."""
