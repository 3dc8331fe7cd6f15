"""Process plumbing: quiet runtime, progress lines, atomic writes, locks, threads, MLflow tracking, provenance
hashes, and the fault injection the crash tests use."""
