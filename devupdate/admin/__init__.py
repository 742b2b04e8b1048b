"""Administration over HTTP: the JSON API (``api``, ``openapi``), bearer tokens (``tokens``) and,
in ``console/``, the web console. Every action calls the same service function as the CLI."""
