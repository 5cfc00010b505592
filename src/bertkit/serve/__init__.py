"""``bertkit serve``: the library behind an HTTP API (FastAPI + uvicorn).

The routes, limits and error format are written down in the project's serve contract and
served at ``/docs``. FastAPI is imported only when :func:`create_app` is called, so
``import bertkit.serve`` stays cheap; ``pip install 'bertkit[serve]'`` brings it.
"""

from .limits import Limits

__all__ = ["create_app", "Limits"]


def create_app(*args, **kwargs):
    """Build the FastAPI app; see :func:`bertkit.serve.app.create_app` for the parameters."""
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)

