"""Screens of the dashboard: each watches the app's reactives and feeds its widgets."""
