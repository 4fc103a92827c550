"""Celery worker: runs faster-whisper on jobs it takes from the queues."""
