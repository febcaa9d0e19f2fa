"""pacore: PaCoRe (Parallel Coordinated Reasoning) campaigns as a distributed job queue."""

__version__ = "0.1.0"
