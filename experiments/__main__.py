"""``python -m experiments <subcommand> ...``: LightningCLI subcommands (fit, validate, test,
predict) and the project's tools that need no Trainer (see :mod:`experiments.tools`)."""

from __future__ import annotations

import os
import sys

TRACEBACK_ENV = "LT_FOOD_SYNTH_TRACEBACK"


def cli_main(args: list[str] | None = None):
    """Entry point, callable in-process from tests: ``cli_main(["fit", "--config", ...])``."""
    argv = list(sys.argv[1:] if args is None else args)
    from experiments.tools import SUBCOMMANDS, TOOLS, run_tool, usage

    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return None
    if argv[0] not in SUBCOMMANDS and not argv[0].startswith("-"):
        raise SystemExit(f"unknown subcommand {argv[0]!r}\n\n{usage()}")
    if argv[0] in TOOLS:
        return run_tool(argv)
    from experiments.cli import lightning_cli

    return lightning_cli(argv)


def main() -> None:
    """The command line: a bad setting or a missing file ends with one line naming it (the
    traceback with ``LT_FOOD_SYNTH_TRACEBACK=1``)."""
    try:
        cli_main()
    except (ValueError, FileNotFoundError, KeyError, TypeError) as err:
        if os.environ.get(TRACEBACK_ENV):
            raise
        cause = err
        while cause.__cause__ is not None or cause.__context__ is not None:
            nested = cause.__cause__ or cause.__context__
            if not isinstance(nested, (ValueError, FileNotFoundError, KeyError, TypeError)):
                break
            cause = nested
        sys.exit(f"error: {cause}\n(the traceback: {TRACEBACK_ENV}=1 python -m experiments ...)")


if __name__ == "__main__":
    main()
