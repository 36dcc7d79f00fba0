# syntax=docker/dockerfile:1
# The gateway image; docker-compose.yml also runs its one-shot jobs (es-setup,
# kibana-import) from it.
# Pinned to a patch release and a Debian release, so a rebuild gets the same interpreter (and
# reads pickled models the host's Python 3.11 wrote); move it on deliberately.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# var/ (event buffer, spool) is a volume in docker-compose.yml, and models/ the checkout's
# models/ bind-mounted; creating them here gives the volume its owner.
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

# The models api.env names (read from API_ENV_FILE, the mounted checkout's, by the gateway's own
# parser); any that is missing is trained (the demo models), into the bind-mounted models/.
settings=$(python -m ml_api.cli shell-env)
eval "$(printf '%s\n' "$settings" | grep '^MODEL_')"
for name in $(printf '%s\n' "$settings" | sed -n 's/^\(MODEL_[A-Z0-9_]*\)=.*\.joblib.\{0,1\}$/\1/p'); do
    eval "file=\$$name"
    if [ ! -f "${MODEL_DIR:-models}/$file" ]; then
        python scripts/train_models.py --if-missing --out-dir "${MODEL_DIR:-models}" || {
            echo "start-gateway: could not train the missing models into ${MODEL_DIR:-models}: make ./models" \
                 "writable for uid $(id -u), or train them on the host (make models)" >&2
            exit 1
        }
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
