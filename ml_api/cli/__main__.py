"""``python -m ml_api.cli``."""

import sys

from ml_api.cli.main import main

sys.exit(main())
