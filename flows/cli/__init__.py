"""The `curate` command line (typer + rich). One module per command group, registered in `app.py`."""

from flows.cli.app import app

__all__ = ["app"]
