"""Model files load only from inside MODEL_DIR."""

import pytest

from ml_api.serving.models import ModelError, ModelRegistry, resolve_model_path


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
