"""`make run`'s first start: generate the secrets api.env leaves empty into LOCAL_SECRETS_FILE.

    python -m scripts.local_secrets

USER_HASH_KEY (the key of user.hash in events) and ADMIN_TOKEN (the admin API's bearer token)
are generated once per checkout when neither api.env nor the environment sets them, appended
to LOCAL_SECRETS_FILE (git-ignored, mode 0600) and read from there by ``ml_api.config`` on
every start, so every worker and every later start uses the same ones. An explicit value wins;
ADMIN_TOKEN=disabled is explicit too. Prints where a generated secret is, never the secret.
"""

import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

from ml_api.config import GENERATED_SECRETS, local_secrets_path, read_settings


def ensure(environ: Mapping[str, str]) -> tuple[Path, list[str]]:
    """Generate every secret still empty after api.env, the environment and the file; the file and their names."""
    settings = read_settings(environ)
    path = local_secrets_path(settings)
    missing = [name for name in GENERATED_SECRETS if not settings.get(name)]
    if missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            for name in missing:
                handle.write(f"{name}={secrets.token_urlsafe(32)}\n")
    return path, missing


def main() -> int:
    path, generated = ensure(os.environ)
    for name in generated:
        print(f"generated {name} into {path} (git-ignored; read it with: grep {name} {path})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
