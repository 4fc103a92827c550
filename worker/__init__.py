"""Celery worker: runs faster-whisper on jobs it takes from the queues.

celery_app   the Celery app from settings, with the tasks bound to one context
tasks        thin tasks: take the message, retry transient trouble, call a runner
jobs         the job runner: claim, then run whole or cut into chunks
whole        decode → engine → lifecycle.finish
chunked      plan, fan out, run a chunk, merge (with chunk_plan, chunk_merge)
lifecycle    the only writer of job and chunk status
heartbeat    one heartbeat for jobs and chunks
engine       faster-whisper: model cache, options, segments → transcript
context      per-process context, and the seams tests swap
reconciler   lost work requeued, retention, storage sweep
webhooks     delivering a job's end to its webhook
"""
