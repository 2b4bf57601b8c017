"""What cron does to a crontab line's command before ``sh -c`` runs it, read by the
schedule's own ``cron_unescape`` (so a mistake there shows in the tests that use it)."""

from __future__ import annotations

from orchestrator.schedule import cron_unescape


def cron_hands_to_shell(command: str) -> str:
    """What cron (vixie/cronie do_command) passes to ``sh -c``: ``\\%`` -> ``%``, and an
    unescaped ``%`` would end the command (the rest becomes stdin), which must not happen.
    """
    text, cut = cron_unescape(command)
    if cut:
        raise AssertionError(f"unescaped % would cut the command: {command!r}")
    return text
