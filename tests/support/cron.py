"""What cron does to a crontab line's command before ``sh -c`` runs it."""

from __future__ import annotations


def cron_hands_to_shell(command: str) -> str:
    """What cron (vixie/cronie do_command) passes to ``sh -c``: ``\\%`` -> ``%``, and an
    unescaped ``%`` would end the command (the rest becomes stdin), which must not happen.
    """
    out: list[str] = []
    escaped = False
    for char in command:
        if escaped:
            if char == "%":
                out[-1] = "%"
            else:
                out.append(char)
            escaped = False
            continue
        if char == "\\":
            escaped = True
        if char == "%":
            raise AssertionError(f"unescaped % would cut the command: {command!r}")
        out.append(char)
    return "".join(out)
