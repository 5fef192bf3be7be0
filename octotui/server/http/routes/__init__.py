"""One router per resource; ``http.factory`` mounts them under ``/api/v1``."""
