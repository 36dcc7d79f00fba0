"""How the command line reports a refused or failed command: the API's words, on stderr, exit status 1."""

import sys

from ml_api.errors import GatewayError
from ml_api.web.errors import describe_error


def report_failure(exc: GatewayError) -> int:
    """Print ``error: <detail>`` (with the underlying cause when the detail hides it); returns 1."""
    _, _, detail = describe_error(exc)
    cause = str(exc)
    print(f"error: {detail}" + (f" ({cause})" if cause and cause not in detail else ""), file=sys.stderr)
    return 1
