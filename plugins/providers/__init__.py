"""Built-in provider adapters, registered under the ``llm_gateway.providers`` entry-point group."""
