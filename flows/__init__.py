"""Prefect orchestration. No stage logic here: tasks run the DVC stages defined in dvc.yaml."""
