"""The `bulkfetch` command's entry (the console script's and `python -m bulkfetch`'s): it starts what the
command will wait for longest, `report`'s figure server (issue 15), before importing bulkfetch.cli.

`bulkfetch report`'s longest step is importing matplotlib, in the server its figure workers fork from
(bulkfetch.report_drawing). Started before the command line's own imports and parsing (a tenth of a
second), that import overlaps them too. The command is told from the arguments
without argparse: the first one that is neither an option nor the value of --config. A word taken for
the command wrongly costs nothing but time: a server started needlessly ends with the command
(bulkfetch.report_server), one not started early is started by the report as before.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bulkfetch.errors import EXIT_INTERRUPTED

# The options before the command that take a value (bulkfetch.cli.build_parser's; a test keeps them equal).
VALUE_OPTIONS = frozenset({"--config"})


def command_of(argv: Sequence[str]) -> str | None:
    """The command word of `bulkfetch ARGV`, or None when there is none."""
    arguments = iter(argv)
    for argument in arguments:
        if _takes_value(argument):
            next(arguments, None)
        elif argument == "--":
            return next(arguments, None)
        elif not argument.startswith("-"):
            return argument
    return None


def _takes_value(argument: str) -> bool:
    """An option taking a value, as written or abbreviated (argparse takes `--conf` for --config)."""
    return len(argument) > 2 and any(option.startswith(argument) for option in VALUE_OPTIONS)


def start_for(argv: Sequence[str]) -> None:
    """Start what the command of `bulkfetch ARGV` will wait for longest, if anything (not for its help)."""
    if command_of(argv) == "report" and not {"-h", "--help"} & set(argv):
        from bulkfetch.report_drawing import start_figure_server

        start_figure_server()


def main() -> int:
    """`bulkfetch ARGS...`: bulkfetch.cli's main, once the early start is under way. Ctrl-C before the
    command runs (while it starts, or reads its command line) ends it as one during it does."""
    try:
        start_for(sys.argv[1:])
        from bulkfetch.cli import main as run_command

        return run_command()
    except KeyboardInterrupt:
        print("bulkfetch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
