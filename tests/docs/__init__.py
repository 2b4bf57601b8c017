"""Helpers for the tests that run the documentation's examples (tests/docs/README.md)."""
