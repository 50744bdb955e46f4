"""``loader run`` in exec mode: read the secrets, build the environment, become the command.

This runs before every app start, so it imports only the stdlib basics (no argparse, no re, no
asyncio, no aiohttp/pydantic/cryptography): supervise mode, masking, the store client and the
templates (YAML) are imported only when asked for.
"""

from __future__ import annotations

import os

from loader.credentials import scrub_environ
from loader.envcheck import warn_unknown
from loader.runner.command import child_env, exec_command
from loader.runner.options import parse, print_help, wants_help
from loader.runner.sources import make_source

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def run_command(argv: Sequence[str]) -> int:
    if wants_help(argv):
        print_help()
        return 0
    opts = parse(argv, os.environ)
    warn_unknown(os.environ)
    templates = None
    if opts.many("template") or opts.get("template_output"):
        from loader.runner.templates import RunTemplates  # YAML: only with a template

        templates = RunTemplates(opts)
    source = make_source(opts, os.environ)
    scrub_environ()  # the token is read: no later child can find it in our environment
    if opts.on("watch") or opts.on("mask"):
        from loader.runner.supervise import supervise

        return supervise(opts, source, templates)
    values = source.load()
    if templates is not None:
        templates.write(values)
    env = child_env(opts, os.environ, values)
    exec_command(opts.command, env)
    return 0  # pragma: no cover - exec does not return
