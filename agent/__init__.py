"""octotui-agent: monitors one machine and runs JMeter load generators there as Docker containers.

It imports ``octotui.protocol`` and nothing else of octotui, so it installs on a load generator
without the dashboard's dependencies.
"""
