"""``python -m ml_api.report <experiment>``: an experiment's results as text tables (see ml_api/cli/report.py)."""

import sys

from ml_api.cli.report import main

if __name__ == "__main__":
    sys.exit(main())
