"""Wait for Kibana, then import the project's saved objects (data view, panels, saved searches, dashboard;
written by build_saved_objects.py).

    KIBANA_URL=http://127.0.0.1:5601 python kibana/import_saved_objects.py [saved-objects.ndjson]

Importing with overwrite=true replaces the objects by their fixed ids, so running it
again after editing the dashboards is safe.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

SAVED_OBJECTS = Path(__file__).resolve().parent / "saved-objects.ndjson"
IMPORT_PATH = "/api/saved_objects/_import?overwrite=true"


def kibana_url(environ: Mapping[str, str]) -> str:
    """Kibana's base URL from KIBANA_URL, without a trailing slash."""
    return environ.get("KIBANA_URL", "http://127.0.0.1:5601").rstrip("/")


def kibana_available(base_url: str) -> bool:
    """Whether Kibana answers its status API with overall level "available"."""
    try:
        with urllib.request.urlopen(f"{base_url}/api/status", timeout=5) as response:
            status = json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return status.get("status", {}).get("overall", {}).get("level") == "available"


def wait_for_kibana(
    base_url: str,
    timeout_s: float,
    interval_s: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll Kibana's status until it is available; TimeoutError after `timeout_s`."""
    deadline = clock() + timeout_s
    while not kibana_available(base_url):
        if clock() >= deadline:
            raise TimeoutError(f"Kibana at {base_url} not available after {timeout_s:.0f}s")
        sleep(interval_s)


def multipart_body(ndjson: bytes, boundary: str) -> bytes:
    """A multipart/form-data body with the NDJSON as the `file` field the import API reads."""
    return b"".join([
        f"--{boundary}\r\n".encode(),
        b'Content-Disposition: form-data; name="file"; filename="saved-objects.ndjson"\r\n',
        b"Content-Type: application/ndjson\r\n\r\n",
        ndjson,
        f"\r\n--{boundary}--\r\n".encode(),
    ])


def import_saved_objects(base_url: str, ndjson: bytes) -> dict[str, Any]:
    """POST the objects to the saved objects import API and return its JSON answer."""
    boundary = uuid.uuid4().hex
    request = urllib.request.Request(
        f"{base_url}{IMPORT_PATH}",
        data=multipart_body(ndjson, boundary),
        method="POST",
        headers={
            "kbn-xsrf": "true",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Import the saved objects; exit status 1 when Kibana reports any error."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    path = Path(args[0]) if args else SAVED_OBJECTS
    base_url = kibana_url(env)
    wait_for_kibana(base_url, timeout_s=float(env.get("KIBANA_WAIT_SECONDS", "300")))
    try:
        result = import_saved_objects(base_url, path.read_bytes())
    except urllib.error.HTTPError as error:
        print(f"import refused: HTTP {error.code}: {error.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    if not result.get("success"):
        print(json.dumps(result.get("errors", result), indent=2), file=sys.stderr)
        return 1
    print(f"imported {result.get('successCount', 0)} saved objects from {path.name} into {base_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
