"""The control server's app factory, kept here so that ``from octotui.server.app import create_app``
goes on working; the HTTP layer lives in ``octotui/server/http/`` (``bench/`` patches the
dependency aliases re-exported here)."""

from octotui.server.http.deps import Anyone, Ctl, Reader, Writer
from octotui.server.http.factory import create_app

__all__ = ["Anyone", "Ctl", "Reader", "Writer", "create_app"]
