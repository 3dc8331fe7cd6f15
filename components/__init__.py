"""The pipeline's stage logic, importable and testable without Prefect, DVC or an MLflow server."""
