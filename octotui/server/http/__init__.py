"""The HTTP layer: the only part of the server that imports FastAPI or Starlette.

``factory`` builds the app; ``routes/`` has one router per resource, with thin handlers over the
:class:`~octotui.server.controller.Controller`; ``deps`` the auth dependencies; ``gate`` the
middleware that authenticates and bounds every request; ``fastpath`` the agents' hot routes;
``errors`` maps the domain's errors to status codes in one table.
"""
