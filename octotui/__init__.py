"""octotui: run Apache JMeter load generators on your own machines, from the terminal."""

from octotui.protocol import VERSION as __version__

__all__ = ["__version__"]
