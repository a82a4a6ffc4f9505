"""Benchmark scripts and report writers, run from a clone (``python -m benchmarks.<name>``); not installed.

``cir`` (composed retrieval, ``./run.sh bench``), ``store`` (catalog store scale), ``learning`` (learning from
use), ``load`` (concurrent sessions against a real server) and ``report`` (renders BENCHMARKS.md).
"""
