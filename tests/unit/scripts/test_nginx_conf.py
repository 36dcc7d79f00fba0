"""The nginx config: placeholders filled from the settings, and nginx itself accepts the result."""

import subprocess
from pathlib import Path

import pytest

from ml_api.config import PROJECT_ROOT, ConfigError, load_config
from scripts import nginx_conf
from tests.nginx_server import nginx_or_skip


def test_fill_replaces_placeholders_and_leaves_nginx_variables():
    text = "listen ${API_HOST}:${API_PORT}; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"
    assert nginx_conf.fill(text, {"API_HOST": "127.0.0.1", "API_PORT": "8000"}) == \
        "listen 127.0.0.1:8000; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"


def test_a_placeholder_without_a_value_is_an_error():
    with pytest.raises(KeyError, match="MAX_BODY_BYTES"):
        nginx_conf.fill("client_max_body_size ${MAX_BODY_BYTES};", {})


@pytest.mark.parametrize("bind,upstream", [
    ("unix:/srv/gw/var/gunicorn.sock", "unix:/srv/gw/var/gunicorn.sock"),
    ("0.0.0.0:8001", "127.0.0.1:8001"),
    ("[::]:8001", "[::1]:8001"),
    ("10.0.0.5:8001", "10.0.0.5:8001"),
])
def test_nginx_reaches_gunicorn_where_it_binds(bind, upstream):
    assert nginx_conf.upstream(bind) == upstream


def test_every_template_placeholder_has_a_value():
    values = nginx_conf.template_values(load_config({}))
    for template in nginx_conf.TEMPLATE_DIR.glob("*.template"):
        assert set(nginx_conf.PLACEHOLDER.findall(template.read_text())) <= set(values), template.name


def test_the_limits_come_from_api_env(tmp_path: Path):
    config = load_config({"MAX_BODY_BYTES": "2048", "PROXY_CLIENT_HEADER_TIMEOUT": "7", "API_HOST": "::1"})
    nginx_conf.render(config, tmp_path)
    gateway = (tmp_path / "gateway.conf").read_text()
    assert "client_max_body_size 2048;" in gateway
    assert "client_header_timeout 7s;" in gateway
    assert f"listen [::1]:{config.api_port};" in gateway
    assert f"server unix:{PROJECT_ROOT / 'var' / 'gunicorn.sock'};" in gateway


@pytest.mark.parametrize("bind", ["unix:/tmp/gateway-test.sock", "127.0.0.1:8001"])
def test_nginx_accepts_the_rendered_config(bind, tmp_path: Path):
    binary = nginx_or_skip()
    nginx_conf.render(load_config({"GUNICORN_BIND": bind}), tmp_path)
    result = subprocess.run([*nginx_conf.command(binary, tmp_path), "-t"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_several_gateway_instances_become_several_upstream_servers(tmp_path: Path):
    config = load_config({"PROXY_UPSTREAMS": "10.0.0.5:8001, 10.0.0.6:8001,unix:var/other.sock"})
    nginx_conf.render(config, tmp_path)
    upstream = (tmp_path / "gateway.conf").read_text().split("upstream gateway {")[1].split("}")[0]
    assert [line.strip() for line in upstream.splitlines() if line.strip().startswith("server ")] == [
        "server 10.0.0.5:8001;", "server 10.0.0.6:8001;", f"server unix:{PROJECT_ROOT / 'var' / 'other.sock'};"]


def test_a_malformed_upstream_names_the_setting():
    with pytest.raises(ConfigError, match="PROXY_UPSTREAMS"):
        load_config({"PROXY_UPSTREAMS": "10.0.0.5:8001,nohost"})
