"""The stages of a run, in order: inventory, plan, the Ansible edge, collect into the run
directory (safely unpacked), parse and window; flow drives them, handoff lends them to AWX."""
