"""``python -m orchestrator.cli``: the ``fleetprof`` command."""

from orchestrator.cli.app import main

main()
