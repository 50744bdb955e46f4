"""The demo app `loader dev` runs under `loader run --watch --mask`.

It reports what it was started with (names, lengths and short fingerprints; and one value
printed outright, to show --mask replacing it), then idles. Each change of its secrets makes
the runner restart it, so a new report appears.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time

NAMES = ("DATABASE_URL", "API_KEY", "GREETING")


def main() -> int:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    parts = []
    for name in NAMES:
        value = os.environ.get(name)
        if value is None:
            parts.append(f"{name}=<unset>")
            continue
        fingerprint = hashlib.sha256(value.encode()).hexdigest()[:8]
        parts.append(f"{name}({len(value)} chars, sha256 {fingerprint})")
    print(f"[demo app pid {os.getpid()}] started with {', '.join(parts)}", flush=True)
    print(
        f"[demo app pid {os.getpid()}] printing GREETING outright: {os.environ.get('GREETING')}",
        flush=True,
    )
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    raise SystemExit(main())
