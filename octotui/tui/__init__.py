"""The octotui dashboard (Textual): it reaches the control server only through :mod:`octotui.client`."""
