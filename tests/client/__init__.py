"""Tests of the client library and its CLI commands."""
