"""``python -m web``: the ``tripwire`` command, ``serve`` when no command is given.

``python -m web --help`` (or ``-h``, or any options without a command) is
``tripwire serve --help``; only ``--version`` stays the top-level option.
"""

import sys

from ._cli import main

_COMMANDS = ("serve", "check", "demo")


def _argv(argv: list[str]) -> list[str]:
    if (argv and argv[0] in _COMMANDS) or "--version" in argv:
        return argv
    return ["serve", *argv]


if __name__ == "__main__":
    sys.exit(main(_argv(sys.argv[1:])))
