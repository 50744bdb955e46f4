"""``loader completion bash|zsh``: a completion script generated from the parser (shtab)."""

from __future__ import annotations

import sys
from typing import Any


def build(name: str, p: Any) -> None:
    p.description = (
        "Prints a completion script for every command and flag. bash: "
        "`loader completion bash > ~/.local/share/bash-completion/completions/loader`; "
        'zsh: `loader completion zsh > "${fpath[1]}/_loader"` (then restart the shell).'
    )
    p.add_argument("shell", choices=("bash", "zsh"))
    p.set_defaults(handler=completion)


def completion(ns: Any) -> int:
    import shtab

    sys.stdout.write(shtab.complete(ns.parser, shell=ns.shell))
    sys.stdout.flush()
    return 0
