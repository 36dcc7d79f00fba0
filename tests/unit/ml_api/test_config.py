import os
import subprocess
import sys
from pathlib import Path

import pytest

from ml_api.config import PROJECT_ROOT, ConfigError, load_config


def write_env(tmp_path: Path, text: str) -> Path:
    base = (PROJECT_ROOT / "api.env").read_text()
    path = tmp_path / "api.env"
    path.write_text(base + "\n" + text)
    return path


def test_api_env_parses_with_defaults():
    config = load_config({})
    assert (config.api_host, config.api_port) == ("127.0.0.1", 8000)
    assert config.model_files == {"logreg": "iris-logreg-v1.joblib", "forest": "iris-forest-v1.joblib",
                                  "churn_logreg": "churn-logreg-v1.joblib", "churn_boost": "churn-boost-v1.joblib"}
    assert config.model_dir == PROJECT_ROOT / "models"


def test_environment_overrides_the_file():
    config = load_config({"API_PORT": "9123", "MODEL_FOREST": "iris-forest-v2.joblib", "REDIS_CLUSTER": "true"})
    assert config.api_port == 9123
    assert config.model_files["forest"] == "iris-forest-v2.joblib"
    assert config.redis_cluster is True


def test_unrelated_environment_variables_are_ignored():
    assert "name" not in load_config({"MODEL_NAME": "gpt"}).model_files


def test_a_model_set_only_in_the_environment_is_added_as_a_line_of_api_env_would():
    config = load_config({"MODEL_CHURN_V2": "churn-boost-v2.joblib", "MODEL_SAFE": "from-elsewhere.skops"})
    assert config.model_files["churn_v2"] == "churn-boost-v2.joblib"
    assert config.model_files["safe"] == "from-elsewhere.skops"


def test_skops_trusted_types_are_a_comma_separated_list():
    assert load_config({"SKOPS_TRUSTED_TYPES": " numpy.dtype, my.Type ,,"}).skops_trusted_types == \
        ("numpy.dtype", "my.Type")
    assert load_config({"SKOPS_TRUSTED_TYPES": ""}).skops_trusted_types == ()


def test_models_are_added_in_the_file(tmp_path):
    config = load_config({}, write_env(tmp_path, "MODEL_SHADOW=shadow.joblib"))
    assert config.model_files["shadow"] == "shadow.joblib"


@pytest.mark.parametrize("name,value,message", [
    ("API_PORT", "eighty", "API_PORT must be an integer"),
    ("REDIS_CLUSTER", "maybe", "REDIS_CLUSTER must be true or false"),
    ("DEFAULT_EXPERIMENT", "", "DEFAULT_EXPERIMENT must be set"),
    ("RESULTS_FOLD_SECONDS", "-5", "RESULTS_FOLD_SECONDS must be a finite number, 0 or more"),
    ("MODEL_TIMEOUT_MS", "nan", "MODEL_TIMEOUT_MS must be a finite number, 0 or more"),
    ("REDIS_TIMEOUT_SECONDS", "inf", "REDIS_TIMEOUT_SECONDS must be a finite number, 0 or more"),
    ("CONFIG_REFRESH_SECONDS", "soon", "CONFIG_REFRESH_SECONDS must be a number"),
])
def test_bad_settings_name_the_setting(name, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config({name: value})


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config({"API_ENV_FILE": str(tmp_path / "nope.env")})


def test_gunicorn_settings_come_from_api_env_and_the_environment(tmp_path):
    # In a subprocess: the settings module sets PROMETHEUS_MULTIPROC_DIR for the process.
    script = ("import runpy; s = runpy.run_path('ml_api/gunicorn.conf.py');"
              "print(s['workers'], s['threads'], s['worker_connections'], s['worker_class'])")
    env = {**os.environ, "GUNICORN_WORKER_CONNECTIONS": "20", "GUNICORN_THREADS": "3",
           "METRICS_DIR": str(tmp_path / "metrics"), "GUNICORN_PIDFILE": str(tmp_path / "g.pid")}
    env.pop("GUNICORN_WORKER_CLASS", None)

    def shown(**settings: str) -> list[str]:
        return subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, env={**env, **settings},
                              capture_output=True, text=True, check=True).stdout.split()

    assert shown() == [str(load_config({}).gunicorn_workers), "3", "20", load_config({}).gunicorn_worker_class]
    assert shown(GUNICORN_WORKER_CLASS="gevent")[3] == "gevent"


def test_gunicorn_binds_a_socket_under_the_project_by_default():
    config = load_config({})
    assert config.gunicorn_bind == f"unix:{PROJECT_ROOT / 'var' / 'gunicorn.sock'}"
    assert load_config({"GUNICORN_BIND": "unix:/run/gw.sock"}).gunicorn_bind == "unix:/run/gw.sock"
    assert load_config({"GUNICORN_BIND": "0.0.0.0:8001"}).gunicorn_bind == "0.0.0.0:8001"


@pytest.mark.parametrize("name,value", [
    ("GUNICORN_BIND", "8001"), ("GUNICORN_BIND", "unix:"), ("GUNICORN_BIND", "host:port"),
    ("PROXY_CLIENT_HEADER_TIMEOUT", "0"), ("PROXY_CLIENT_BODY_TIMEOUT", "-5"),
    ("GUNICORN_WORKER_CLASS", "eventlet"),
])
def test_bad_proxy_settings_name_the_setting(name, value):
    with pytest.raises(ConfigError, match=name):
        load_config({name: value})


def test_generated_secrets_fill_only_what_api_env_and_the_environment_leave_empty(tmp_path):
    secrets_file = tmp_path / "secrets.local.env"
    secrets_file.write_text("USER_HASH_KEY=generated-key-0123456789\nADMIN_TOKEN=generated-token\n")
    environ = {"LOCAL_SECRETS_FILE": str(secrets_file), "USER_HASH_KEY": "", "ADMIN_TOKEN": ""}
    config = load_config(environ)
    assert (config.user_hash_key, config.admin_token) == ("generated-key-0123456789", "generated-token")
    assert load_config({**environ, "ADMIN_TOKEN": "explicit"}).admin_token == "explicit"
    assert load_config({**environ, "ADMIN_TOKEN": "disabled"}).admin_token == "", "disabled turns the API off"
    in_file = load_config({"LOCAL_SECRETS_FILE": str(secrets_file)}, write_env(tmp_path, "USER_HASH_KEY=from-api-env-0123"))
    assert in_file.user_hash_key == "from-api-env-0123"
    assert load_config({"LOCAL_SECRETS_FILE": str(tmp_path / "none.env"), "ADMIN_TOKEN": ""}).admin_token == ""


def test_make_runs_first_start_generates_the_missing_secrets_once(tmp_path):
    from scripts import local_secrets

    environ = {"LOCAL_SECRETS_FILE": str(tmp_path / "secrets.local.env"), "USER_HASH_KEY": "", "ADMIN_TOKEN": ""}
    path, generated = local_secrets.ensure(environ)
    assert generated == ["USER_HASH_KEY", "ADMIN_TOKEN"] and path.stat().st_mode & 0o777 == 0o600
    first = load_config(environ)
    assert len(first.user_hash_key) >= 32 and len(first.admin_token) >= 32
    assert local_secrets.ensure(environ) == (path, []), "kept: every later start uses the same ones"
    assert load_config(environ) == first
    _, generated = local_secrets.ensure({**environ, "LOCAL_SECRETS_FILE": str(tmp_path / "b.env"),
                                         "ADMIN_TOKEN": "disabled", "USER_HASH_KEY": "explicit-key-0123456"})
    assert generated == [], "an explicit value, and disabled, are never replaced"
    assert not (tmp_path / "b.env").exists()
