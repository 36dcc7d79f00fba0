"""The per-worker objects every view needs, built once by the application factory."""

from dataclasses import dataclass
from functools import partial

import redis
from flask import Flask, current_app

from assigner import AssignmentStore, RedisAssignmentStore
from assigner.memory import StickyMemory
from assigner.sharded_store import ShardedRedisAssignmentStore
from ml_api.background import PeriodicTask, current_pid
from ml_api.cache import LazyClusterClient, RequestDirectory, create_redis
from ml_api.catalog import ExperimentCatalog
from ml_api.config import Config
from ml_api.db import Database, DatabaseUnavailable
from ml_api.events import EventEmitter, create_emitter
from ml_api.metrics import APPLY_INTERVAL_SECONDS, SAMPLES, InstrumentedStore
from ml_api.experiment_repo import ExperimentRepository
from ml_api.models import ModelRegistry
from ml_api.records import Recorder
from ml_api.request_stats import RequestStats
from ml_api.spool import Spool, deliver_spool

EXTENSION = "ml_api"


@dataclass
class Services:
    config: Config
    db: Database
    redis: "redis.Redis | LazyClusterClient"
    store: AssignmentStore  # the sticky store, its failures counted (metrics.InstrumentedStore)
    memory: StickyMemory | None  # confirmed assignments this worker answers without Redis
    requests: RequestDirectory  # its writer thread sends request ids to Redis
    recorder: Recorder
    spool: Spool
    flusher: PeriodicTask  # drains the spool into MySQL
    metrics_writer: PeriodicTask  # writes the request path's queued Prometheus samples
    catalog: ExperimentCatalog
    experiments: ExperimentRepository
    models: ModelRegistry
    events: EventEmitter
    request_stats: RequestStats
    background_pid: int | None = None  # the process whose periodic threads run (start_background)


def build_services(config: Config) -> Services:
    """Wire every resource from the configuration; nothing connects until first use."""
    db = Database(config.mysql)
    client = create_redis(config)
    spool = Spool(config.spool_path)
    recorder = Recorder(db, spool)
    models = ModelRegistry(
        config.model_dir, config.model_files, config.model_state_path,
        timeout_seconds=config.model_timeout_ms / 1000, max_parallel=config.gunicorn_threads,
    )
    return Services(
        config=config,
        db=db,
        redis=client,
        store=InstrumentedStore(create_store(config, client)),
        memory=StickyMemory(config.sticky_memory_users) if config.sticky_memory_users else None,
        requests=RequestDirectory(client, config.redis_key_prefix, config.request_id_ttl_seconds),
        recorder=recorder,
        spool=spool,
        flusher=PeriodicTask("spool-flusher", partial(deliver_spool, spool, recorder.write_spooled, partial(_reachable, db)), 1.0),
        metrics_writer=PeriodicTask("metrics-writer", SAMPLES.apply, APPLY_INTERVAL_SECONDS),
        catalog=ExperimentCatalog(db, config.config_refresh_seconds, config.definitions_snapshot_path),
        experiments=ExperimentRepository(db, models.names),
        models=models,
        events=create_emitter(
            config.logstash_host, config.logstash_port, config.event_file, config.event_buffer_path,
            config.service_version,
        ),
        request_stats=RequestStats(db, retention_minutes=config.request_stats_retention_days * 1440),
    )


def create_store(config: Config, client: "redis.Redis | LazyClusterClient") -> AssignmentStore:
    """The sticky-store layout named by STICKY_STORE."""
    if config.sticky_store == "sharded":
        return ShardedRedisAssignmentStore(client, config.redis_key_prefix)
    return RedisAssignmentStore(client, config.redis_key_prefix)


def start_background(svc: Services) -> None:
    """The worker's periodic threads, started once per process (after gunicorn's fork).

    Called before every request: after the first, one comparison."""
    if svc.background_pid == current_pid():
        return
    svc.flusher.ensure_started()
    svc.metrics_writer.ensure_started()
    svc.request_stats.ensure_started()
    svc.requests.writer.ensure_started()
    svc.background_pid = current_pid()


def stop_background(svc: Services) -> None:
    """End the periodic threads after their current run (worker shutdown, tests)."""
    svc.flusher.stop()
    svc.metrics_writer.stop()
    svc.request_stats.stop()
    svc.requests.writer.stop()
    svc.background_pid = None


def _reachable(db: Database) -> bool:
    try:
        db.ping()
        return True
    except DatabaseUnavailable:
        return False


def init_app(app: Flask, services: Services) -> None:
    app.extensions[EXTENSION] = services


def services() -> Services:
    """The current app's services (inside a request or app context)."""
    return current_app.extensions[EXTENSION]
