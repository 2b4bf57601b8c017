"""The campaign: its model, each profiler's settings, the checks every value goes through,
the YAML loader and the messages a bad campaign file gets."""
