"""The nightly check: run a campaign, judge every host against its peers and its own
history (regressions, outliers), keep that history in SQLite, and compare two runs."""
