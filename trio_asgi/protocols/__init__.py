"""Sans-IO protocol layers: bytes in, events out, with no I/O and no application code."""
