"""Celery workers: the pipeline steps that turn queued tasks into agent runs."""
