"""Widgets of the dashboard: they render values handed to them and never do I/O."""
