"""The command line: ``python -m ml_api.cli`` (experiments and rollouts) and ``python -m ml_api.report``."""

from ml_api.cli.main import main

__all__ = ["main"]
