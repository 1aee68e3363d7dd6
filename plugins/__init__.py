"""Built-in plugins of llm-gateway: hook plugins at this level, vendor adapters in ``providers``."""
