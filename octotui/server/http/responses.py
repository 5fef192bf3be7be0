"""Response classes of the API."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi.responses import JSONResponse

log = logging.getLogger("octotui.server")


class ListingResponse(JSONResponse):
    """JSON of the listings every client reads: one record holding text that cannot be encoded
    (a lone surrogate that slipped past validation) must not make them fail for everyone.
    Such characters become ``?``; the rest of the answer is exact."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as exc:
            log.warning("a listing holds text that is not valid Unicode (%s): answered with '?' for it", exc.reason)
            return text.encode("utf-8", "replace")
