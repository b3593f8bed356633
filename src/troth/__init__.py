"""troth: durable execution for Python.

The server (``troth serve``) keeps durable promises, tasks, timers and schedules and speaks the Resonate
protocol; the SDK (``from troth import Troth``) makes ``async def`` functions durable on top of it.
"""

__version__ = "0.1.0"
