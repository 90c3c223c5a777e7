"""A Flask (WSGI) app on trio_asgi: forms, JSON, a streamed upload and a streamed response.

Run it:  python -m trio_asgi examples.wsgi_flask:app --interface wsgi
         (``--interface auto``, the default, detects it too; needs ``pip install flask``)
Try it:  curl 'http://127.0.0.1:8000/?name=you'
         curl -d name=you http://127.0.0.1:8000/echo
         curl --json '{"name": "you"}' http://127.0.0.1:8000/echo
         curl -T some-big-file http://127.0.0.1:8000/upload
         curl -N 'http://127.0.0.1:8000/stream?count=5&delay=1'

Each request runs in a worker thread (``--wsgi-threads``, 40 by default), so blocking calls
such as ``time.sleep`` are fine here. ``/upload`` reads the body as it arrives, 64 KiB at
a time, so even a huge upload uses little memory; ``/stream`` sends each piece as soon as
it is made.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

from flask import Flask, Response, jsonify, request, stream_with_context

app = Flask(__name__)

READ_SIZE = 64 * 1024


@app.get("/")
def hello() -> str:
    name = request.args.get("name", "world")
    return f"Hello, {name}!\n"


@app.post("/echo")
def echo() -> Response:
    """Form fields or a JSON document, echoed back as JSON."""
    if request.is_json:
        return jsonify(json=request.get_json())
    return jsonify(form=request.form.to_dict(flat=False))


@app.route("/upload", methods=["POST", "PUT"])
def upload() -> Response:
    """Hash the body while it streams in; never hold it whole."""
    digest = hashlib.sha256()
    size = largest = 0
    while chunk := request.stream.read(READ_SIZE):
        digest.update(chunk)
        size += len(chunk)
        largest = max(largest, len(chunk))
    return jsonify(bytes=size, sha256=digest.hexdigest(), largest_read=largest)


@app.get("/stream")
def stream() -> Response:
    """``count`` lines, ``delay`` seconds apart, each sent as soon as it is made."""
    count = request.args.get("count", 5, type=int)
    delay = request.args.get("delay", 0.0, type=float)

    def lines() -> Iterator[str]:
        for index in range(count):
            if index and delay:
                time.sleep(delay)
            yield f"line {index} of {count}\n"

    return Response(stream_with_context(lines()), mimetype="text/plain")
