"""The documentation's examples as tests: the markdown convention and the sandbox they run in
(tests/support/docs/README.md)."""
