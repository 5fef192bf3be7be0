"""Monitors of the servers under test: what the server assigns this agent, collected by kind
(:mod:`agent.monitors.scheduler`, one module per kind), reported in its heartbeats."""

from agent.monitors.scheduler import MonitorScheduler

__all__ = ["MonitorScheduler"]
