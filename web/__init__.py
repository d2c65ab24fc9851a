"""tripwire's REST API and command line.

::

    async with open_circuit_breakers(config) as manager:
        app = create_app(manager, config_path="config.toml", server=config.server)
        await serve_app(app, "127.0.0.1:8080")

or, engine and API together: ``await serve(load_config("config.toml"), config_path=...)``.
The command line is ``tripwire serve | check | demo`` (also ``python -m web``).
"""

from ._app import MAX_BODY_BYTES as MAX_BODY_BYTES
from ._app import create_app as create_app
from ._cli import main as main
from ._persist import PersistError as PersistError
from ._persist import render_config as render_config
from ._persist import write_config as write_config
from ._server import StartupError as StartupError
from ._server import run_until_signalled as run_until_signalled
from ._server import serve as serve
from ._server import serve_app as serve_app

__all__ = [
    "MAX_BODY_BYTES",
    "PersistError",
    "StartupError",
    "create_app",
    "main",
    "render_config",
    "run_until_signalled",
    "serve",
    "serve_app",
    "write_config",
]
