"""Model files load only from inside MODEL_DIR; a .skops file only with types it is told to trust."""

import pytest
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ml_api.serving.models import ModelError, ModelRegistry, load_model, resolve_model_path


class Scaler(StandardScaler):
    """A class of the file's author: skops cannot know what constructing it does."""


@pytest.mark.parametrize("name", ["../secrets.joblib", "../../etc/passwd", "/etc/passwd", "sub/../../x.joblib", "."])
def test_paths_outside_the_model_dir_are_refused(tmp_path, name):
    (tmp_path / "models").mkdir()
    with pytest.raises(ModelError, match="outside the model directory"):
        resolve_model_path(tmp_path / "models", name)


def test_a_symlink_out_of_the_model_dir_is_refused(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (tmp_path / "elsewhere.joblib").write_bytes(b"x")
    (models / "link.joblib").symlink_to(tmp_path / "elsewhere.joblib")
    with pytest.raises(ModelError, match="outside"):
        resolve_model_path(models, "link.joblib")


def test_a_registry_reports_traversal_as_a_load_error(tmp_path):
    registry = ModelRegistry(tmp_path, {"evil": "../../etc/passwd"})
    assert "outside the model directory" in registry.errors["evil"]
    with pytest.raises(ModelError):
        registry.get("evil")


@pytest.fixture
def pipelines(tmp_path):
    x, y = [[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]], [0, 0, 1, 1]
    skops.io.dump({"estimator": make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y),
                   "metadata": {"version": "v7"}}, tmp_path / "plain.skops")
    skops.io.dump(make_pipeline(Scaler(), LogisticRegression()).fit(x, y), tmp_path / "custom.skops")
    return tmp_path


def test_a_skops_file_of_trusted_types_loads(pipelines):
    model = load_model("plain", pipelines, "plain.skops")
    assert model.version == "v7" and model.predict([3.0, 0.0]).label == 1


def test_a_skops_file_with_an_untrusted_type_is_refused_naming_it(pipelines):
    with pytest.raises(ModelError, match=r"refused: 'custom.skops' holds types SKOPS_TRUSTED_TYPES does not list: "
                                         r"tests\.unit\.ml_api\.serving\.test_models\.Scaler"):
        load_model("custom", pipelines, "custom.skops", trusted_types=("numpy.dtype",))
    trusted = load_model("custom", pipelines, "custom.skops", ("tests.unit.ml_api.serving.test_models.Scaler",))
    assert trusted.predict([0.0, 1.0]).label == 0


def test_a_skops_file_outside_the_model_dir_is_refused(pipelines):
    (pipelines / "models").mkdir()
    with pytest.raises(ModelError, match="outside the model directory"):
        load_model("plain", pipelines / "models", "../plain.skops")
