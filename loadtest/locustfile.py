"""Simulated users of the experiment gateway: sticky predictions, feedback, reads.

Each simulated visitor is one end user drawn from a population of ``--population`` ids
with Zipf-like popularity (a few users come back often, most rarely), so the load mixes
first visits (a MySQL exposure write) with repeat visits (a Redis hit), as real traffic
does. Every answer is checked: the variant of a user must never change within a run, and
the variant recorded for feedback must be the one served. A change is a Locust failure
"sticky violation" on the request that revealed it.

Feedback posts two metrics: ``outcome`` (was the prediction right) and, for a share of the
right ones, a purchase under ``--revenue-metric`` (default ``revenue``). An experiment that
does not declare that metric answers 400 naming the metrics it takes; the run then stops
posting it (logged once) rather than counting failures.

Options (command line, ``loadtest/*.conf`` or ``LOCUST_*`` environment variables):
``--population``, ``--zipf-exponent``, ``--visits-per-user``, ``--feedback-rate``,
``--revenue-metric``, ``--experiment`` (empty: the gateway's DEFAULT_EXPERIMENT), ``--user-prefix``.

    make loadtest                       # web UI on http://127.0.0.1:8089
    locust --config loadtest/smoke.conf --host http://127.0.0.1:8000   # 30 s headless

Only the standard library and Locust are imported, so the file also runs in the
``locustio/locust`` container of docker-compose.yml.
"""

import bisect
import itertools
import logging
import random
from dataclasses import dataclass
from typing import Any

from locust import HttpUser, between, events, task
from locust.clients import ResponseContextManager

log = logging.getLogger(__name__)

STICKY_VIOLATION = "sticky violation"
# Per-species feature means and standard deviations of the iris data set (cm), so the
# models see the inputs they were trained on and feedback ("was it right?") means something.
IRIS = {
    "setosa": ((5.006, 3.428, 1.462, 0.246), (0.352, 0.379, 0.174, 0.105)),
    "versicolor": ((5.936, 2.770, 4.260, 1.326), (0.516, 0.314, 0.470, 0.198)),
    "virginica": ((6.588, 2.974, 5.552, 2.026), (0.636, 0.322, 0.552, 0.275)),
}


@events.init_command_line_parser.add_listener
def add_options(parser: Any) -> None:
    parser.add_argument("--population", type=int, default=20_000, env_var="LOCUST_POPULATION",
                        help="distinct end-user ids")
    parser.add_argument("--zipf-exponent", type=float, default=1.1, env_var="LOCUST_ZIPF_EXPONENT",
                        help="popularity skew: user of rank k visits in proportion to 1/k**s")
    parser.add_argument("--visits-per-user", type=int, default=5, env_var="LOCUST_VISITS_PER_USER",
                        help="predictions in one visit before the simulated user draws another id")
    parser.add_argument("--feedback-rate", type=float, default=0.2, env_var="LOCUST_FEEDBACK_RATE",
                        help="share of predictions followed by POST /feedback")
    parser.add_argument("--revenue-metric", default="revenue", env_var="LOCUST_REVENUE_METRIC",
                        help="second feedback metric, a purchase amount (empty: post only the outcome)")
    parser.add_argument("--experiment", default="", env_var="LOCUST_EXPERIMENT",
                        help="experiment name; empty for the gateway's default")
    parser.add_argument("--user-prefix", default="load", env_var="LOCUST_USER_PREFIX",
                        help="user ids are <prefix>-<rank>")


class Population:
    """User ids of ranks 1..n, drawn with probability proportional to 1/rank**exponent."""

    def __init__(self, size: int, exponent: float, prefix: str) -> None:
        self._cumulative = list(itertools.accumulate(1 / rank**exponent for rank in range(1, size + 1)))
        self._prefix = prefix

    def draw(self, rng: random.Random) -> str:
        rank = bisect.bisect_left(self._cumulative, rng.random() * self._cumulative[-1]) + 1
        return f"{self._prefix}-{rank}"


class StickyLedger:
    """The first variant seen for each user id in this Locust process (shared by all users)."""

    def __init__(self) -> None:
        self._variants: dict[str, str] = {}

    def check(self, user_id: str, variant: str) -> str | None:
        """Remember the user's variant; return the earlier one when it differs."""
        first = self._variants.setdefault(user_id, variant)
        return first if first != variant else None


@dataclass(frozen=True)
class Served:
    user_id: str
    request_id: str
    variant: str
    prediction: str
    species: str


_shared: dict[str, Any] = {}


@events.test_start.add_listener
def build_shared(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    _shared["population"] = Population(options.population, options.zipf_exponent, options.user_prefix)
    _shared["ledger"] = StickyLedger()


def flower(rng: random.Random) -> tuple[str, list[float]]:
    """A species and a plausible measurement of one of its flowers."""
    species = rng.choice(list(IRIS))
    means, stds = IRIS[species]
    return species, [round(max(0.1, rng.gauss(m, s)), 1) for m, s in zip(means, stds)]


def expect_json(response: ResponseContextManager, status: int) -> dict[str, Any] | None:
    """The JSON body when the status is ``status``; otherwise mark the request failed."""
    if response.status_code != status:
        response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
        return None
    try:
        return response.json()
    except ValueError:
        response.failure("response is not JSON")
        return None


class GatewayUser(HttpUser):
    """One visitor at a time: a few predictions under one user id, some feedback, some reads."""

    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.experiment_seen: str | None = None
        self.visits_left = 0
        self.user_id = ""

    def next_user_id(self) -> str:
        if self.visits_left <= 0:
            self.user_id = _shared["population"].draw(self.rng)
            self.visits_left = self.environment.parsed_options.visits_per_user
        self.visits_left -= 1
        return self.user_id

    @task(10)
    def predict(self) -> None:
        user_id = self.next_user_id()
        species, features = flower(self.rng)
        body: dict[str, Any] = {"user_id": user_id, "features": features}
        if self.environment.parsed_options.experiment:
            body["experiment"] = self.environment.parsed_options.experiment
        with self.client.post("/predict", json=body, name="/predict", catch_response=True) as response:
            answer = expect_json(response, 200)
            if answer is None:
                return
            if not {"request_id", "variant", "prediction", "in_experiment"} <= answer.keys():
                response.failure(f"incomplete answer: {sorted(answer)}")
                return
            self.experiment_seen = answer["experiment"]
            if not answer["in_experiment"]:
                return  # outside the traffic allocation, forced or paused: no stickiness promise
            earlier = _shared["ledger"].check(user_id, answer["variant"])
            if earlier is not None:
                log.error("%s: %s was %s, now %s", STICKY_VIOLATION, user_id, earlier, answer["variant"])
                response.failure(STICKY_VIOLATION)
                return
        served = Served(user_id, answer["request_id"], answer["variant"], str(answer["prediction"]), species)
        if self.rng.random() < self.environment.parsed_options.feedback_rate:
            self.feedback(served)

    def feedback(self, served: Served) -> None:
        """The outcome is whether the prediction named the species the flower was drawn from."""
        right = served.prediction == served.species
        self.post_feedback(served, {"request_id": served.request_id, "outcome": right}, "/feedback")
        metric = self.environment.parsed_options.revenue_metric
        if right and metric and not _shared.get("revenue_refused") and self.rng.random() < 0.5:
            amount = round(self.rng.lognormvariate(3.0, 0.8), 2)  # a purchase, about 20 on the median
            self.post_feedback(served, {"request_id": served.request_id, "outcome": amount, "metric": metric},
                               f"/feedback [{metric}]")

    def post_feedback(self, served: Served, body: dict[str, Any], name: str) -> None:
        """One outcome; the variant it was recorded for must be the one served."""
        with self.client.post("/feedback", json=body, name=name, catch_response=True) as response:
            if "metric" in body and response.status_code == 400 and "has no metric" in response.text:
                log.warning("the experiment does not declare the metric %r; posting only outcomes", body["metric"])
                _shared["revenue_refused"] = True
                response.success()
                return
            answer = expect_json(response, 202)
            if answer is not None and answer.get("variant") != served.variant:
                log.error("%s: %s served %s, recorded %s", STICKY_VIOLATION, served.user_id, served.variant,
                          answer.get("variant"))
                response.failure(STICKY_VIOLATION)

    @task(1)
    def health(self) -> None:
        with self.client.get("/health", name="/health", catch_response=True) as response:
            answer = expect_json(response, 200)
            if answer is not None and answer.get("status") != "ok":
                response.failure(f"unhealthy: {answer}")

    @task(1)
    def results(self) -> None:
        name = self.environment.parsed_options.experiment or self.experiment_seen
        if name is None:
            return  # no prediction answered yet, so the default experiment's name is unknown
        with self.client.get(f"/experiments/{name}/results", name="/experiments/[name]/results",
                             catch_response=True) as response:
            if response.status_code == 404 and _error_code(response) == "not_found":
                response.success()  # the results endpoint is not deployed on this gateway yet
                return
            expect_json(response, 200)


def _error_code(response: ResponseContextManager) -> str | None:
    try:
        return response.json().get("error")
    except (ValueError, AttributeError):
        return None
