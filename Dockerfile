# syntax=docker/dockerfile:1
# The gateway image; docker-compose.yml also runs its one-shot jobs (es-setup,
# kibana-import) from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# var/ (event buffer, spool) and models/ are volumes in docker-compose.yml; creating
# them here gives the volumes their owner.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app app \
    && mkdir -p var models \
    && chown -R app:app var models

# Start-up: wait for MySQL and apply the schema, train any model api.env names that is
# not on disk, generate the secrets api.env leaves empty, then hand the process over to
# gunicorn (exec: it gets the signals).
COPY --chmod=0755 <<'SCRIPT' /usr/local/bin/start-gateway
#!/bin/sh
set -eu

attempt=1
until python -m ml_api.cli init-db; do
    if [ "$attempt" -ge "${DB_INIT_ATTEMPTS:-30}" ]; then
        echo "start-gateway: MySQL not ready after $attempt attempts" >&2
        exit 1
    fi
    echo "start-gateway: waiting for MySQL ($attempt)" >&2
    attempt=$((attempt + 1))
    sleep 2
done

for name in $(env | sed -n 's/^\(MODEL_[A-Z0-9_]*\)=.*\.joblib$/\1/p'); do
    if [ ! -f "${MODEL_DIR:-models}/$(printenv "$name")" ]; then
        python scripts/train_models.py
        break
    fi
done

# USER_HASH_KEY and ADMIN_TOKEN, when api.env leaves them empty: generated once into
# LOCAL_SECRETS_FILE (var/secrets.env on the gateway-var volume), kept across restarts.
python -m scripts.local_secrets

exec gunicorn -c ml_api/gunicorn.conf.py 'ml_api:create_app()'
SCRIPT

USER app
EXPOSE 8000
CMD ["start-gateway"]
