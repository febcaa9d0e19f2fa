"""The `pacore` command: `app` builds the settings and the group; each module adds one group of commands.

The control plane (`scheduler`) and the workers (`worker`) are imported inside the commands that need
them, so that `pacore submit` and `pacore status` need neither Celery workers nor an engine.
"""

from pacore.cli import campaigns, database, fleet, results  # noqa: F401  (each adds its commands to main)
from pacore.cli.app import main

__all__ = ["main"]
