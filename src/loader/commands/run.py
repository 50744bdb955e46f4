"""``loader run`` in the argparse parser: only for completion scripts. (``loader run`` itself,
``--help`` included, takes the fast path in :mod:`loader.runner.execmode`.)"""

from __future__ import annotations

from typing import Any


def build(name: str, p: Any) -> None:
    from loader.runner.options import add_run_arguments

    add_run_arguments(p)
