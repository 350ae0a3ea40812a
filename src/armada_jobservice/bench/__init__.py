"""Benchmarks of the job service against baselines measured in the same run.

``armada-jobservice bench`` starts the Armada simulator, the job service and
each baseline as separate processes on 127.0.0.1, drives them from separate
load processes, and reports every figure beside its baseline as a ratio (see
``docs/benchmarks.md``).
"""
