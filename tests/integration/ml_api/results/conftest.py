"""What the results tests share: a recorder with its own spool, and an experiment declaring the
module's ``DECLARATION`` of metrics (the default metric where a module declares none)."""

import pytest

from ml_api.experiments.records import Recorder
from ml_api.infra.spool import Spool


@pytest.fixture
def recorder(db, tmp_path):
    return Recorder(db, Spool(tmp_path / "spool.db"))


@pytest.fixture
def experiment(request, repo, make_experiment):
    declaration = getattr(request.module, "DECLARATION", None)
    return repo.get(make_experiment(**({"metrics": declaration} if declaration else {})))
