"""RFC 6455 / RFC 7692 conformance, one module per Autobahn|Testsuite case group.

The tests speak raw bytes to the server (``wire.py``) and judge what comes back the way the
Autobahn fuzzing client does: exact frames, exact close codes, and the TCP close after.
"""
