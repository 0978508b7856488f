"""Prefect flows: each composes plain functions from `tasks/` and adds tracking and artifacts."""
