"""Side-by-side benchmark of trio_asgi and its peers; run it with ``scripts/bench/run.py``."""
