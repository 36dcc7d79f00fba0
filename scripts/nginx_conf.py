"""The nginx in front of gunicorn: its config rendered from nginx/*.template, and how to start it.

    python -m scripts.nginx_conf render    # writes PROXY_DIR/nginx.conf and gateway.conf, prints the command

The templates hold every directive; this module only fills their ``${NAME}`` placeholders
with the settings of api.env (and the environment), so `make run`, `make reload`, the tests
and docker-compose.yml (where the official image fills gateway.conf.template) run the same
config.
"""

import os
import pwd
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from ml_api.config import PROJECT_ROOT, UNIX_PREFIX, Config, load_config

TEMPLATE_DIR = PROJECT_ROOT / "nginx"
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
MAIN_CONF = "nginx.conf"
PID_FILE = "nginx.pid"  # as nginx.conf.template names it, under the prefix
ERROR_LOG = "error.log"


def upstream(bind: str) -> str:
    """Where nginx reaches gunicorn, from GUNICORN_BIND: a wildcard address is reached on loopback."""
    if bind.startswith(UNIX_PREFIX):
        return bind
    host, _, port = bind.rpartition(":")
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}.get(host, host)
    return f"{host}:{port}"


def upstream_servers(binds: tuple[str, ...]) -> str:
    """The value of ``server ${PROXY_UPSTREAM};``: one address, or several joined into more
    ``server`` lines (the same text docker-compose's envsubst would be given)."""
    return ";\n    server ".join(upstream(bind) for bind in binds)


def template_values(config: Config) -> dict[str, str]:
    """The value of every placeholder in the templates."""
    host = config.api_host
    return {
        "API_HOST": f"[{host}]" if ":" in host and not host.startswith("[") else host,
        "API_PORT": str(config.api_port),
        "MAX_BODY_BYTES": str(config.max_body_bytes),
        "MAX_BATCH_BODY_BYTES": str(config.max_batch_body_bytes),
        "PROXY_CLIENT_HEADER_TIMEOUT": str(config.proxy_client_header_timeout),
        "PROXY_CLIENT_BODY_TIMEOUT": str(config.proxy_client_body_timeout),
        "PROXY_UPSTREAM": upstream_servers(config.proxy_upstreams or (config.gunicorn_bind,)),
    }


def fill(template: str, values: Mapping[str, str]) -> str:
    """``template`` with every ``${NAME}`` replaced; a name without a value is an error, not an empty string."""
    missing = sorted(set(PLACEHOLDER.findall(template)) - set(values))
    if missing:
        raise KeyError(f"no value for {', '.join(missing)} in the nginx template")
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def worker_user() -> str | None:
    """Who nginx's workers run as, when started by root: the owner of the checkout, so they reach the
    gunicorn socket and the buffers under it (nginx's default, nobody, may not enter the directory).
    None when not root: nginx's workers then run as whoever started it."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwuid(PROJECT_ROOT.stat().st_uid).pw_name


def render(config: Config, prefix: Path) -> Path:
    """Write ``prefix``/nginx.conf and its gateway.conf; return the path of nginx.conf."""
    values = template_values(config)
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "tmp").mkdir(exist_ok=True)
    (prefix / "gateway.conf").write_text(fill((TEMPLATE_DIR / "gateway.conf.template").read_text(), values))
    main = fill((TEMPLATE_DIR / "nginx.conf.template").read_text(), values)
    if user := worker_user():
        main = f"user {user};\n{main}"
    path = prefix / MAIN_CONF
    path.write_text(main)
    return path


def nginx_binary() -> str | None:
    """The nginx executable (Debian puts it in /usr/sbin, outside a normal user's PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def command(binary: str, prefix: Path) -> list[str]:
    """nginx on ``prefix``'s rendered config: relative paths, the early error log included, stay in ``prefix``."""
    return [binary, "-p", f"{prefix}/", "-c", str(prefix / MAIN_CONF), "-e", str(prefix / ERROR_LOG)]


def main() -> int:
    if sys.argv[1:] != ["render"]:
        print(__doc__, file=sys.stderr)
        return 2
    config = load_config(os.environ)
    render(config, config.proxy_dir)
    print(" ".join(command(nginx_binary() or "nginx", config.proxy_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
