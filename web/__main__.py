"""``python -m web``: the ``tripwire`` command, ``serve`` when no command is given."""

import sys

from ._cli import main

_COMMANDS = ("serve", "check", "demo")


def _argv(argv: list[str]) -> list[str]:
    if any(arg in _COMMANDS for arg in argv) or {"-h", "--help", "--version"} & set(argv):
        return argv
    return ["serve", *argv]


sys.exit(main(_argv(sys.argv[1:])))
