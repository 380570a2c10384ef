"""The job container: the entrypoint every executor runs, and the analysis pipelines."""

__version__ = "0.1.0"
