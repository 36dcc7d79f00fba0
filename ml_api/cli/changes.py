"""The CLI's experiments and event destination: a change made here is reported like one made over HTTP."""

from ml_api.config import Config
from ml_api.experiments.repository import ExperimentRepository
from ml_api.infra.database import Database
from ml_api.telemetry import change_events
from ml_api.telemetry.events import EventEmitter, create_emitter


def open_events(config: Config) -> EventEmitter:
    """The gateway's event destination (Logstash, else EVENT_FILE; its disk buffer while Logstash is
    away), so that a change made here is an ``experiment_change`` event like one made over HTTP."""
    return create_emitter(config.logstash_host, config.logstash_port, config.event_file,
                          config.event_buffer_path, config.service_version)


def repository(config: Config, events: EventEmitter, db: Database | None = None) -> ExperimentRepository:
    """The experiments, with every committed change reported as an event."""
    return ExperimentRepository(db or Database(config.mysql), config.model_files,
                                on_change=change_events.reporter(events))
