"""The `membersync` command line. Bad input exits 2 with one line saying what is wrong."""

from membersync.cli.main import app, main

__all__ = ["app", "main"]
