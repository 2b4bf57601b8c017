"""Tests that run real processes as a device would (the session runner, its samplers,
workloads under py-spy) or whose outcome depends on timing: `make process`."""
