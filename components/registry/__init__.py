"""MLflow model registry: the policy as a pyfunc model, its registered versions and aliases."""
