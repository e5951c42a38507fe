"""Workbench entry point: `make run` (or `python app.py --host 127.0.0.1 --port 8050`).

One server process with threads: engine runs execute on the registry's worker pool, so the
JAX compile cache and the run registry are shared by every browser session. The page is the
panels of workbench/panels/ composed by workbench/layout.py (``create_app`` sets it up).

HTTP is served by waitress (a production WSGI server: one process, ``server_threads``
request threads, bodies over the cap refused before they are buffered); ``--dev-server``
serves with Flask's development server instead, for debugging on one machine. Ctrl-C and
SIGTERM close the port, stop every run (each one's meta.json says how it ended) and exit
within a few seconds. ``python app.py --help`` lists every setting (workbench/config.py).
"""

import logging
import os
import signal
import threading
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from workbench import registry as reg  # noqa: E402
from workbench import sweeps  # noqa: E402
from workbench.config import from_argv  # noqa: E402
from workbench.server import create_app  # noqa: E402

# On Ctrl-C or SIGTERM: active runs get this long to stop at their next chunk (and be saved
# "stopped"); any still inside an engine call after it is marked "interrupted".
SHUTDOWN_WAIT_S = 4.0


def _interrupt(signum, frame) -> None:
    """SIGTERM ends the server the way Ctrl-C does (the serve loop returns)."""
    raise KeyboardInterrupt


def shut_down(log: logging.Logger, wait: float = SHUTDOWN_WAIT_S) -> None:
    """Stop every run (each one's meta.json says how it ended) and the sweeps' cluster; when
    a worker is stuck in an engine call that cannot be interrupted, leave without it."""
    log.info("shutting down: stopping active runs (up to %.0f s)", wait)
    clean = reg.get().shutdown(wait=wait)
    try:
        sweeps.get().shutdown()
    except Exception as err:  # the runs are saved: a cluster that will not close is no reason
        log.warning("sweep cluster shutdown: %s", err)
    deadline = time.monotonic() + 1.0  # idle pool threads leave at once
    while _busy_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not clean or _busy_threads():
        log.warning("a worker is still inside an engine call; exiting without it")
        logging.shutdown()
        os._exit(0)  # worker threads are joined at exit: do not wait for a stuck one


def _busy_threads() -> list:
    """Live non-daemon threads other than this one (the interpreter would wait for them)."""
    me = threading.current_thread()
    return [t for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()]


def serve(app, config) -> None:
    """Serve ``app`` until Ctrl-C or SIGTERM (KeyboardInterrupt): waitress, or Flask's
    development server with ``config.dev_server``."""
    if config.dev_server:
        app.run(host=config.host, port=config.port, debug=False, threaded=True,
                dev_tools_hot_reload=False)  # fmt: skip
        return
    from waitress import create_server

    server = create_server(
        app.server,
        host=config.host,
        port=config.port,
        threads=config.server_threads,
        # the app answers bodies up to 4x its cap with a 413 naming the cap; waitress refuses
        # larger ones before buffering them
        max_request_body_size=4 * config.max_request_bytes,
        connection_limit=1000,  # a class: ~30 browsers x up to 6 keep-alive connections each
        ident="slowmode-workbench",
    )
    server.run()  # returns after closing the port on KeyboardInterrupt


def main(argv=None) -> None:
    config = from_argv(argv)
    log = logging.getLogger("workbench")  # warm-up, start-up and failed-run messages
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    app = create_app(config)
    cache = config.compile_cache_path
    print(
        f"Workbench on http://{config.host}:{config.port} "
        f"({'development server' if config.dev_server else 'waitress'}; "
        f"runs kept in {os.path.abspath(config.run_dir)}; "
        f"compilation cache {os.path.abspath(cache) if cache else 'off'})",
        flush=True,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C / SIGINT stops the server even when it was started with SIGINT ignored (a shell
    # that starts a command in the background without job control ignores SIGINT for it, and
    # Python then leaves it ignored): the server would otherwise never stop on SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        serve(app, config)
    except KeyboardInterrupt:
        pass
    finally:
        shut_down(log)


if __name__ == "__main__":
    main()
