"""The web layer: the FastAPI app and its lifespan (``app``), the routes, the wire models (``schemas``), upload
parsing, the request middleware, the one mapping of errors to HTTP (``errors``), the offline API docs, the demo
page with its ``static/`` files, and uvicorn as the service runs it (``server``).

Nothing below this package imports it; importing the package itself loads nothing (the client uses ``schemas``
without FastAPI).
"""
