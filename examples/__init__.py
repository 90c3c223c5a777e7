"""Runnable example applications for trio_asgi (``python -m trio_asgi examples.chat:app``).

A regular package (not a namespace package) so that ``examples.*`` always resolves to this
directory, even if some installed distribution ships a top-level ``examples`` package.
"""
