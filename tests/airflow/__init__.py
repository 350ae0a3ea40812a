"""Tests of the Airflow integration (run for real by scripts/test-airflow)."""
