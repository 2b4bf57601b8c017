"""Rendering results for people and tools: report.html, summary.md, the terminal tables,
exports (speedscope, folded, JUnit, Prometheus) and the comparison and history views."""
