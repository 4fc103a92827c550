"""Code shared by the API and the worker. Imports neither of them, nor faster-whisper."""
