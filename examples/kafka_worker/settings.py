"""Settings every role of the Kafka worker reads from the environment (with the upstream defaults)."""

from __future__ import annotations

import os
import tempfile

KAFKA_BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
RECORDS_TOPIC = os.environ.get("RECORDS_TOPIC", "records_to_be_deleted")
COMPLETIONS_TOPIC = os.environ.get("COMPLETIONS_TOPIC", "records_that_were_deleted")
CONSUMER_GROUP = os.environ.get("CONSUMER_GROUP", "record_consumer_group")
WORKER_GROUP = "workers"
DEFAULT_TROTH_URL = "http://127.0.0.1:8001"


def troth_url() -> str:
    return os.environ.get("TROTH_URL") or os.environ.get("RESONATE_URL") or DEFAULT_TROTH_URL


def app_db_path() -> str:
    """The SQLite file of the application database (``APP_DB``), shared by the producer and the deleters."""
    return os.environ.get("APP_DB") or os.path.join(tempfile.gettempdir(), "troth_kafka_worker_app.db")


def batch_size() -> int:
    return int(os.environ.get("BATCH_SIZE", "10"))


def batch_pause_s() -> float:
    return float(os.environ.get("BATCH_PAUSE_S", "5"))


def fail_rate() -> float:
    return float(os.environ.get("FAIL_RATE", "0.25"))
