"""The octotui control server: REST API, long-poll command delivery, state store, placement."""
