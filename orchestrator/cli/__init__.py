"""The command line: one module per command group (run, check, schedule, tools, compare,
stages), their shared options and interrupt handler once, and the terminal's live progress."""
