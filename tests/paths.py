"""Where the tests find the project's files, wherever a test module sits in the tree."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = PROJECT_ROOT / "tests" / "data"
ASSIGNMENT_VECTORS = TEST_DATA / "assignment_vectors.json"
EVENT_SCHEMA = PROJECT_ROOT / "logstash" / "event.schema.json"
