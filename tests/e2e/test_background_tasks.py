"""Every periodic task of a worker runs under both worker classes (under gevent its threads are
greenlets of the worker's loop): the event shipper, the request-id writer, the Prometheus
sample writer, the request-statistics flusher and the results folder each deliver what requests
queued. The spool delivery is held by test_degradation, the model pool by test_model_budget."""

from pathlib import Path

from ml_api.results.fold import dirty_rows
from tests.conftest import BOTH_WORKER_CLASSES, read_events, request_id
from tests.waiting import wait_until

pytestmark = BOTH_WORKER_CLASSES

IRIS = [6.0, 2.2, 5.0, 1.5]
REQUESTS = 20


def counted_requests(db, experiment_id: int) -> int:
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT COALESCE(SUM(requests), 0) FROM request_stats WHERE experiment_id = %s",
                       (experiment_id,))
        return int(cursor.fetchone()[0])


def test_each_periodic_task_delivers_what_requests_queued(gateway, db, repo, make_experiment):
    experiment = make_experiment()
    served = [gateway.post("/predict", {"user_id": f"bg-{i}", "experiment": experiment, "features": IRIS})
              for i in range(REQUESTS)]
    assert all(response.status_code == 200 for response in served)
    ids = {response.json()["request_id"] for response in served}

    wait_until(lambda: ids <= {request_id(e) for e in read_events(Path(gateway.env["EVENT_FILE"]))},
               message="the event shipper wrote every predict event")
    wait_until(lambda: gateway.post("/feedback", {"request_id": sorted(ids)[0], "outcome": True}).status_code == 202,
               message="the request-id writer stored the request ids in Redis")
    sample = f'abtest_predict_latency_seconds_count{{experiment="{experiment}"'
    wait_until(lambda: sample in gateway.get("/metrics").text, message="the metrics writer wrote the samples")
    experiment_id = repo.get(experiment).id
    wait_until(lambda: counted_requests(db, experiment_id) >= REQUESTS,
               message="the request-statistics flusher wrote the counts to MySQL")
    wait_until(lambda: folded_outcome_users(db, experiment_id) == 1 and dirty_rows(db, experiment_id) == 0,
               message="the results folder counted the outcome in the results' sums")


def folded_outcome_users(db, experiment_id: int) -> int:
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT COALESCE(SUM(users), 0) FROM metric_totals WHERE experiment_id = %s", (experiment_id,))
        return int(cursor.fetchone()[0])
