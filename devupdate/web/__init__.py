"""The HTTP edge of ``devupdate serve``: the gunicorn worker, request framing, server-level refusals."""
