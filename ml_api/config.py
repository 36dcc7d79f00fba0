"""All settings of the gateway, parsed and typed in one place.

Settings come from ``api.env`` (the file users edit); an environment variable of the
same name overrides the file. The gateway, its CLI, gunicorn.conf.py and the nginx config
(``scripts/nginx_conf.py``) take every setting from here (``load_config``). Three readers
of the environment stand apart: the Elasticsearch setup command (``telemetry.elastic``),
which runs in its own container and reads ELASTICSEARCH_URL, EVENT_RETENTION_DAYS and the
MySQL settings itself; prometheus_client, which reads PROMETHEUS_MULTIPROC_DIR (set by
gunicorn.conf.py); and the official nginx image in docker-compose.yml, which fills
nginx/gateway.conf.template from api.env itself.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ENV_FILE = PROJECT_ROOT / "api.env"
MODEL_PREFIX = "MODEL_"
# Secrets `make run` generates into LOCAL_SECRETS_FILE when api.env and the environment leave them
# empty (scripts/local_secrets.py); an explicit value always wins.
GENERATED_SECRETS = ("USER_HASH_KEY", "ADMIN_TOKEN")
ADMIN_DISABLED = "disabled"
NOT_MODELS = {"MODEL_DIR", "MODEL_TIMEOUT_MS", "MODEL_STATE_PATH"}
STICKY_STORES = ("sharded", "keys")
WORKER_CLASSES = ("gthread", "gevent")
UNIX_PREFIX = "unix:"
MODEL_FILE_SUFFIXES = (".joblib", ".skops")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class MySQLSettings:
    host: str
    port: int
    database: str
    user: str
    password: str
    pool_size: int
    admin_user: str
    admin_password: str


@dataclass(frozen=True)
class Config:
    api_host: str
    api_port: int
    gunicorn_workers: int
    gunicorn_worker_class: str
    gunicorn_threads: int
    gunicorn_worker_connections: int
    gunicorn_timeout: int
    gunicorn_pidfile: Path
    gunicorn_bind: str
    proxy_upstreams: tuple[str, ...]  # gateway instances nginx balances over; () = this host's GUNICORN_BIND
    service_version: str
    default_experiment: str
    config_refresh_seconds: float
    verdict_check_seconds: float
    results_fold_seconds: float  # 0: no background folds (each results read still folds first)
    definitions_snapshot_path: Path
    admin_token: str  # "" when the admin API is off (ADMIN_TOKEN=disabled, or empty with none generated)
    user_hash_key: str  # "" until one is set or generated; the gateway refuses to start without one
    model_dir: Path
    model_files: Mapping[str, str]
    model_timeout_ms: float
    model_state_path: Path
    skops_trusted_types: tuple[str, ...]
    max_body_bytes: int
    max_user_id_length: int
    proxy_client_header_timeout: int
    proxy_client_body_timeout: int
    proxy_dir: Path
    max_batch_rows: int
    max_batch_body_bytes: int
    redis_url: str
    redis_cluster: bool
    redis_key_prefix: str
    redis_timeout_seconds: float
    sticky_store: str
    sticky_memory_users: int
    request_id_ttl_seconds: int
    request_stats_retention_days: int
    mysql: MySQLSettings
    logstash_host: str
    logstash_port: int
    event_file: Path
    event_buffer_path: Path
    log_raw_user_id: bool
    spool_path: Path
    metrics_dir: Path
    env_file: Path = field(default=DEFAULT_ENV_FILE)


def read_settings(environ: Mapping[str, str], env_file: Path | None = None) -> dict[str, str]:
    """The merged raw settings: the env file, overridden by ``environ``."""
    path = Path(environ.get("API_ENV_FILE") or env_file or DEFAULT_ENV_FILE)
    if not path.is_file():
        raise ConfigError(f"settings file not found: {path}")
    merged = {key: value or "" for key, value in dotenv_values(path).items()}
    # A MODEL_<NAME> of the environment alone adds a model (containers name their models this way) when it
    # names a model file: other tools' variables (MODEL_NAME=gpt-4) are no models.
    merged.update({key: value for key, value in environ.items()
                   if key in merged or (is_model_setting(key) and value.endswith(MODEL_FILE_SUFFIXES))})
    merged["API_ENV_FILE"] = str(path)
    generated = local_secrets(merged)
    for name in GENERATED_SECRETS:
        if not merged.get(name) and generated.get(name):
            merged[name] = generated[name]
    return merged


def local_secrets_path(settings: Mapping[str, str]) -> Path:
    """LOCAL_SECRETS_FILE, relative to the project like every other path."""
    path = Path(settings.get("LOCAL_SECRETS_FILE") or "secrets.local.env")
    return path if path.is_absolute() else PROJECT_ROOT / path


def local_secrets(settings: Mapping[str, str]) -> dict[str, str]:
    """The generated secrets (GENERATED_SECRETS) in LOCAL_SECRETS_FILE; {} before the first `make run`."""
    path = local_secrets_path(settings)
    if not path.is_file():
        return {}
    return {key: value for key, value in dotenv_values(path).items() if key in GENERATED_SECRETS and value}


def load_config(environ: Mapping[str, str], env_file: Path | None = None) -> Config:
    """Parse and type every setting; raise ConfigError naming the first bad one."""
    raw = read_settings(environ, env_file)
    get = _Reader(raw)
    return Config(
        api_host=get.str("API_HOST"),
        api_port=get.int("API_PORT"),
        gunicorn_workers=get.int("GUNICORN_WORKERS"),
        gunicorn_worker_class=get.choice("GUNICORN_WORKER_CLASS", WORKER_CLASSES),
        gunicorn_threads=get.int("GUNICORN_THREADS"),
        gunicorn_worker_connections=get.int("GUNICORN_WORKER_CONNECTIONS"),
        gunicorn_timeout=get.int("GUNICORN_TIMEOUT"),
        gunicorn_pidfile=get.path("GUNICORN_PIDFILE"),
        gunicorn_bind=get.bind("GUNICORN_BIND"),
        proxy_upstreams=get.binds("PROXY_UPSTREAMS"),
        service_version=get.str("SERVICE_VERSION"),
        default_experiment=get.str("DEFAULT_EXPERIMENT"),
        config_refresh_seconds=get.duration("CONFIG_REFRESH_SECONDS"),
        verdict_check_seconds=get.duration("VERDICT_CHECK_SECONDS"),
        results_fold_seconds=get.duration("RESULTS_FOLD_SECONDS"),
        definitions_snapshot_path=get.path("DEFINITIONS_SNAPSHOT_PATH"),
        admin_token=_admin_token(get.str("ADMIN_TOKEN", allow_empty=True)),
        user_hash_key=get.str("USER_HASH_KEY", allow_empty=True),
        model_dir=get.path("MODEL_DIR"),
        model_files=_model_files(raw),
        model_timeout_ms=get.duration("MODEL_TIMEOUT_MS"),
        model_state_path=get.path("MODEL_STATE_PATH"),
        skops_trusted_types=get.names("SKOPS_TRUSTED_TYPES"),
        max_body_bytes=get.int("MAX_BODY_BYTES"),
        max_user_id_length=get.int("MAX_USER_ID_LENGTH"),
        proxy_client_header_timeout=get.positive("PROXY_CLIENT_HEADER_TIMEOUT"),
        proxy_client_body_timeout=get.positive("PROXY_CLIENT_BODY_TIMEOUT"),
        proxy_dir=get.path("PROXY_DIR"),
        max_batch_rows=get.int("MAX_BATCH_ROWS"),
        max_batch_body_bytes=get.int("MAX_BATCH_BODY_BYTES"),
        redis_url=get.str("REDIS_URL"),
        redis_cluster=get.bool("REDIS_CLUSTER"),
        redis_key_prefix=get.str("REDIS_KEY_PREFIX"),
        redis_timeout_seconds=get.duration("REDIS_TIMEOUT_SECONDS"),
        sticky_store=get.choice("STICKY_STORE", STICKY_STORES),
        sticky_memory_users=get.count("STICKY_MEMORY_USERS"),
        request_id_ttl_seconds=get.int("REQUEST_ID_TTL_SECONDS"),
        request_stats_retention_days=get.count("REQUEST_STATS_RETENTION_DAYS"),
        mysql=MySQLSettings(
            host=get.str("MYSQL_HOST"),
            port=get.int("MYSQL_PORT"),
            database=get.str("MYSQL_DATABASE"),
            user=get.str("MYSQL_USER"),
            password=get.str("MYSQL_PASSWORD", allow_empty=True),
            pool_size=get.int("MYSQL_POOL_SIZE"),
            admin_user=get.str("MYSQL_ADMIN_USER"),
            admin_password=get.str("MYSQL_ADMIN_PASSWORD", allow_empty=True),
        ),
        logstash_host=get.str("LOGSTASH_HOST", allow_empty=True),
        logstash_port=get.int("LOGSTASH_PORT"),
        event_file=get.path("EVENT_FILE"),
        event_buffer_path=get.path("EVENT_BUFFER_PATH"),
        log_raw_user_id=get.bool("LOG_RAW_USER_ID"),
        spool_path=get.path("SPOOL_PATH"),
        metrics_dir=get.path("METRICS_DIR"),
        env_file=Path(raw["API_ENV_FILE"]),
    )


def is_model_setting(key: str) -> bool:
    """``MODEL_<NAME>``, the file of one model (not MODEL_DIR and the other model settings)."""
    return key.startswith(MODEL_PREFIX) and key not in NOT_MODELS and len(key) > len(MODEL_PREFIX)


def _admin_token(value: str) -> str:
    return "" if value == ADMIN_DISABLED else value


def _model_files(raw: Mapping[str, str]) -> dict[str, str]:
    models = {key[len(MODEL_PREFIX):].lower(): value for key, value in raw.items() if is_model_setting(key) and value}
    if not models:
        raise ConfigError("no model configured: add MODEL_<NAME>=<file> to api.env")
    return models


class _Reader:
    """Typed access to raw settings with errors that name the setting."""

    def __init__(self, raw: Mapping[str, str]) -> None:
        self._raw = raw

    def str(self, name: str, allow_empty: bool = False) -> str:
        value = self._raw.get(name)
        if value is None or (not value and not allow_empty):
            raise ConfigError(f"{name} must be set in api.env or the environment")
        return value.strip()

    def int(self, name: str) -> int:
        try:
            return int(self.str(name))
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {self._raw[name]!r}") from None

    def count(self, name: str) -> int:
        value = self.int(name)
        if value < 0:
            raise ConfigError(f"{name} must be 0 or more, got {value}")
        return value

    def positive(self, name: str) -> int:
        value = self.int(name)
        if value < 1:
            raise ConfigError(f"{name} must be 1 or more, got {value}")
        return value

    def float(self, name: str) -> float:
        try:
            return float(self.str(name))
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {self._raw[name]!r}") from None

    def duration(self, name: str) -> float:
        """A time (seconds or milliseconds, as the name says): a finite number, 0 or more."""
        value = self.float(name)
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name} must be a finite number, 0 or more, got {self._raw[name]!r}")
        return value

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        value = self.str(name).lower()
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def bool(self, name: str) -> bool:
        value = self.str(name).lower()
        if value in {"1", "true", "yes", "on"}:
            return True
        if value in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} must be true or false, got {value!r}")

    def names(self, name: str) -> tuple[str, ...]:
        """A comma-separated list (possibly empty), each item stripped."""
        return tuple(item.strip() for item in self.str(name, allow_empty=True).split(",") if item.strip())

    def path(self, name: str) -> Path:
        path = Path(self.str(name))
        return path if path.is_absolute() else PROJECT_ROOT / path

    def binds(self, name: str) -> tuple[str, ...]:
        """A comma-separated list of ``bind`` values; empty for none."""
        values = [value.strip() for value in self.str(name, allow_empty=True).split(",")]
        return tuple(self._bind(name, value) for value in values if value)

    def bind(self, name: str) -> str:
        """``unix:<path>`` (made absolute: gunicorn and nginx run from different directories) or ``<host>:<port>``."""
        return self._bind(name, self.str(name))

    @staticmethod
    def _bind(name: str, value: str) -> str:
        if value.startswith(UNIX_PREFIX):
            if not value[len(UNIX_PREFIX):]:
                raise ConfigError(f"{name} must name a socket path after unix:, got {value!r}")
            path = Path(value[len(UNIX_PREFIX):])
            return UNIX_PREFIX + str(path if path.is_absolute() else PROJECT_ROOT / path)
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"{name} must be unix:<path> or <host>:<port>, got {value!r}")
        return value
