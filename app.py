"""Workbench entry point: `make run` (or `python app.py --host 127.0.0.1 --port 8050`).

One server process with threads: engine runs execute on the registry's worker pool, so the
JAX compile cache and the run registry are shared by every browser session. The page is the
panels of workbench/panels/ composed by workbench/layout.py (``create_app`` sets it up).
"""

import logging
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from workbench.config import from_argv  # noqa: E402
from workbench.server import create_app  # noqa: E402


def main(argv=None) -> None:
    config = from_argv(argv)
    log = logging.getLogger("workbench")  # warm-up and start-up messages
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    app = create_app(config)
    cache = config.compile_cache_path
    print(
        f"Workbench on http://{config.host}:{config.port} "
        f"(runs kept in {os.path.abspath(config.run_dir)}; "
        f"compilation cache {os.path.abspath(cache) if cache else 'off'})",
        flush=True,
    )
    app.run(
        host=config.host, port=config.port, debug=False, threaded=True, dev_tools_hot_reload=False
    )


if __name__ == "__main__":
    main()
