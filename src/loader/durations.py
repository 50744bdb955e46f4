"""Durations like ``30s``, ``5m``, ``1h30m``, ``2d`` or plain seconds (stdlib only)."""

from __future__ import annotations

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    raw = text.strip().lower()
    if not raw:
        raise ValueError("empty duration")
    try:
        return float(raw)
    except ValueError:
        pass
    total = 0.0
    number = ""
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = "ms" if raw.startswith("ms", i) else ch
        if unit not in _UNITS or not number:
            raise ValueError(f"bad duration {text!r}: use e.g. 30s, 5m, 1h, 2d")
        total += float(number) * _UNITS[unit]
        number = ""
        i += len(unit)
    if number:
        raise ValueError(f"bad duration {text!r}: a number needs a unit (s, m, h, d)")
    return total
