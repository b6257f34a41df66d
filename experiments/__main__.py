"""``python -m experiments <subcommand> ...``: LightningCLI subcommands (fit, validate, test,
predict) and the project's tools that need no Trainer (see :mod:`experiments.tools`)."""

from __future__ import annotations

import sys


def cli_main(args: list[str] | None = None):
    """Entry point, callable in-process from tests: ``cli_main(["fit", "--config", ...])``."""
    argv = list(sys.argv[1:] if args is None else args)
    from experiments.tools import TOOLS, run_tool

    if argv and argv[0] in TOOLS:
        return run_tool(argv)
    from experiments.cli import lightning_cli

    return lightning_cli(args)


if __name__ == "__main__":
    cli_main()
