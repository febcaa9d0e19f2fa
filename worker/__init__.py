"""GPU nodes: the `generate` task and the inference engine adapters."""
