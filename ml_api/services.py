"""The per-worker objects, built in one place, with the one ``start``/``stop`` of their threads.

``build_services`` wires every object a worker needs from the configuration; nothing
connects to MySQL or Redis until first use. ``Services.start`` starts every background
thread of the worker (gunicorn calls it in ``post_worker_init``, after the fork and before
the worker serves); ``Services.stop`` ends them and writes what they hold (``worker_exit``).
Tests that drive the app through Flask's test client start nothing unless they ask.
"""

import logging
from dataclasses import dataclass
from functools import partial

import redis
from flask import Flask, current_app

from assigner import AssignmentStore, RedisAssignmentStore
from assigner.memory import StickyMemory
from assigner.sharded_store import ShardedRedisAssignmentStore
from ml_api.config import Config
from ml_api.errors import DatabaseUnavailable
from ml_api.experiments.catalog import ExperimentCatalog
from ml_api.experiments.records import Recorder
from ml_api.experiments.repository import ExperimentRepository
from ml_api.infra.background import PeriodicTask
from ml_api.infra.database import Database
from ml_api.infra.redis_client import LazyClusterClient, create_redis
from ml_api.infra.request_ids import RequestDirectory
from ml_api.infra.spool import Spool, deliver_spool
from ml_api.rollout.changes import RolloutRepository
from ml_api.results.document import stopped_variations
from ml_api.results.fold import fold_running
from ml_api.rollout.engine import Rollout
from ml_api.rollout.shadow import ShadowMirror
from ml_api.serving.models import ModelRegistry
from ml_api.telemetry import change_events
from ml_api.telemetry.events import EventEmitter, create_emitter
from ml_api.telemetry.pseudonyms import UserPseudonyms
from ml_api.telemetry.metrics import APPLY_INTERVAL_SECONDS, SAMPLES, InstrumentedStore
from ml_api.telemetry.request_stats import RequestStats

log = logging.getLogger(__name__)

EXTENSION = "ml_api"
SPOOL_DELIVERY_SECONDS = 1.0


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
    spool_delivery: PeriodicTask  # drains the spool into MySQL
    metrics_writer: PeriodicTask  # writes the request path's queued Prometheus samples
    catalog: ExperimentCatalog
    experiments: ExperimentRepository
    models: ModelRegistry
    events: EventEmitter
    users: UserPseudonyms  # user.hash in events: keyed by USER_HASH_KEY
    request_stats: RequestStats
    rollout: Rollout  # shadow mirroring, ramps and guardrail pauses of this worker
    results_fold: PeriodicTask | None  # folds new outcomes into the results' sums (None: RESULTS_FOLD_SECONDS=0)

    def start(self) -> None:
        """Start every background thread of this worker (idempotent)."""
        self.events.start()
        self.spool_delivery.ensure_started()
        self.metrics_writer.ensure_started()
        self.request_stats.start()
        self.requests.writer.ensure_started()
        self.rollout.start()
        if self.results_fold:
            self.results_fold.ensure_started()

    def stop(self) -> None:
        """End every background thread and write what it holds; each step survives the others' failures.

        The rollout first (its last shadow predictions still emit events), then the events, the
        request ids, the Prometheus samples, and the request counts (monitoring data: lost if
        MySQL is away; the records themselves are spooled)."""
        folder = [self.results_fold.stop] if self.results_fold else []
        for step in (self.rollout.close, *folder, self.spool_delivery.stop, self.metrics_writer.stop,
                     self.requests.writer.stop, self.request_stats.stop, self.events.close, self.requests.flush,
                     SAMPLES.apply, self.request_stats.flush, self.db.close):
            try:
                step()
            except Exception:  # e.g. MySQL or Redis away at exit: what is lost is logged
                log.warning("worker stop: %s failed", getattr(step, "__qualname__", step), exc_info=True)


def build_services(config: Config) -> Services:
    """Wire every per-worker object from the configuration; nothing connects until first use."""
    db = Database(config.mysql)
    client = create_redis(config)
    spool = Spool(config.spool_path)
    recorder = Recorder(db, spool)
    models = ModelRegistry(
        config.model_dir, config.model_files, config.model_state_path,
        timeout_seconds=config.model_timeout_ms / 1000, max_parallel=config.gunicorn_threads,
        trusted_types=config.skops_trusted_types,
    )
    events = create_emitter(
        config.logstash_host, config.logstash_port, config.event_file, config.event_buffer_path,
        config.service_version,
    )
    users = UserPseudonyms(config.user_hash_key, config.log_raw_user_id)
    experiments = ExperimentRepository(db, models.names, on_change=change_events.reporter(events))
    return Services(
        config=config,
        db=db,
        redis=client,
        store=InstrumentedStore(create_store(config, client)),
        memory=StickyMemory(config.sticky_memory_users) if config.sticky_memory_users else None,
        requests=RequestDirectory(client, config.redis_key_prefix, config.request_id_ttl_seconds),
        recorder=recorder,
        spool=spool,
        spool_delivery=PeriodicTask("spool-delivery", partial(deliver_spool, spool, recorder.write_spooled,
                                                              partial(_reachable, db)), SPOOL_DELIVERY_SECONDS),
        metrics_writer=PeriodicTask("metrics-writer", SAMPLES.apply, APPLY_INTERVAL_SECONDS),
        catalog=ExperimentCatalog(db, config.config_refresh_seconds, config.definitions_snapshot_path),
        experiments=experiments,
        models=models,
        events=events,
        users=users,
        request_stats=RequestStats(db, retention_minutes=config.request_stats_retention_days * 1440),
        rollout=Rollout(
            RolloutRepository(experiments, db, models.names),
            ShadowMirror(models, events, users),
            db, events, config.config_refresh_seconds,
            stopped_variations=partial(stopped_variations, db, experiments=experiments),
            verdict_interval_seconds=config.verdict_check_seconds,
        ),
        results_fold=PeriodicTask("results-fold", partial(fold_running, db), config.results_fold_seconds)
        if config.results_fold_seconds > 0 else None,
    )


def create_store(config: Config, client: "redis.Redis | LazyClusterClient") -> AssignmentStore:
    """The sticky-store layout named by STICKY_STORE."""
    if config.sticky_store == "sharded":
        return ShardedRedisAssignmentStore(client, config.redis_key_prefix)
    return RedisAssignmentStore(client, config.redis_key_prefix)


def _reachable(db: Database) -> bool:
    try:
        db.ping()
        return True
    except DatabaseUnavailable:
        return False


def init_app(app: Flask, services: Services) -> None:
    """Make ``services`` the app's (``services()`` finds them inside a request)."""
    app.extensions[EXTENSION] = services


def services() -> Services:
    """The current app's services (inside a request or app context)."""
    return current_app.extensions[EXTENSION]


def of_app(app: object) -> Services | None:
    """The services of a gunicorn worker's app (None before the app loaded)."""
    return getattr(app, "extensions", {}).get(EXTENSION)
