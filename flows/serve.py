"""Serve the pipeline as the deployment 'pipo-pipeline/local' on the Prefect API in PREFECT_API_URL.

Then `prefect deployment run 'pipo-pipeline/local'` runs the whole pipeline.
"""

from flows.pipeline import pipo_pipeline

if __name__ == "__main__":
    pipo_pipeline.serve(name="local")
