"""Litestar front end: both path families, auth, forms, rendering. Never imports faster-whisper."""
