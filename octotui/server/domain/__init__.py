"""The server's domain: its state and the rules that change it. Nothing here knows HTTP (no FastAPI,
no Starlette): refusals are :mod:`octotui.server.errors`, mapped to status codes by ``http/``.

Each module is functions over one :class:`~octotui.server.domain.state.ServerState`:
``lifecycle`` (the test/container state machine), ``commands`` (queueing and acknowledgements),
``stopping``, ``launch`` (validation, placement, idempotency), ``agents`` (registration,
deletion, retiring), ``reconcile`` (heartbeats), ``providers``, ``operators`` (tokens and audit),
``labels`` (per-label figures and errors, merged over a test's containers),
``views`` (records -> wire models), ``loading`` (start-up), ``persistence`` (coalesced writes) and
``ticks`` (the periodic work). ``clock`` is the one wall clock they read.
"""
