"""Server configuration: one frozen dataclass, read once at start-up.

Everything a deployment may want to change (bind address, worker pool, where runs are kept,
upload cap) lives here rather than in module globals, so tests can build a registry with a
temporary run directory and a tiny pool.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

SHARED_PDB = os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "pdb")
)


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Choices for one workbench server process.

    host, port: bind address (loopback unless told otherwise).
    workers: engine runs executing at once; more submissions queue.
    max_active_per_session: queued + running runs one browser session may hold, so one
        tab cannot fill the queue for a whole class.
    run_dir: finished runs are persisted here and re-indexed at start-up.
    bundle_dirs: folders holding run bundles written by the CLI (listed read-only).
    structure_dirs: folders whose *.pdb files are offered as "structures on this machine".
    max_upload_bytes: cap on uploaded structure files (stated in the UI).
    frame_ms: period of the browser's frame stream (/_wb/frames) for live 3D views; the
        stream sends only frames newer than the browser has, so 50 ms allows 20 frames/s.
    poll_ms: period of the Dash poll that grows the curves and status lines.
    max_frames: frames kept per run for replay (older ones are thinned, never the last).
    compile_cache_dir: JAX's persistent compilation cache, so a second run of the same shapes
        and a restarted server do not recompile; None: ``<run_dir>/.jax-cache``; "": none.
    warm_up: at start, compile the opening demo's kernels on a background thread.
    scheduler: the Dask scheduler sweeps run on (tcp://HOST:PORT); None: an embedded
        LocalCluster of ``sweep_workers`` single-threaded process workers, started on the
        first sweep (default: one per core).
    max_running_sweeps: sweeps running at once; more wait in a queue.
    """

    host: str = "127.0.0.1"
    port: int = 8050
    workers: int = 2
    max_active_per_session: int = 4
    run_dir: str = "runs"
    bundle_dirs: tuple[str, ...] = ("runs", "results")
    structure_dirs: tuple[str, ...] = (SHARED_PDB,)
    max_upload_bytes: int = 2_000_000
    frame_ms: int = 50
    poll_ms: int = 400
    max_frames: int = 400
    compile_cache_dir: str | None = None
    warm_up: bool = True
    scheduler: str | None = None
    sweep_workers: int | None = None
    max_running_sweeps: int = 1

    @property
    def compile_cache_path(self) -> str | None:
        """The compilation cache folder in use, or None when turned off."""
        if self.compile_cache_dir is None:
            return os.path.join(self.run_dir, ".jax-cache")
        return self.compile_cache_dir or None

    def __post_init__(self):
        if not 1 <= self.workers <= 64:
            raise ValueError(f"workers must be in [1, 64], got {self.workers}")
        if not 1 <= self.max_active_per_session <= 1000:
            raise ValueError(
                f"max_active_per_session must be in [1, 1000], got {self.max_active_per_session}"
            )
        if not 20 <= self.poll_ms <= 10_000:
            raise ValueError(f"poll_ms must be in [20, 10000], got {self.poll_ms}")
        if not 10 <= self.frame_ms <= 10_000:
            raise ValueError(f"frame_ms must be in [10, 10000], got {self.frame_ms}")
        if self.max_frames < 2:
            raise ValueError(f"max_frames must be >= 2, got {self.max_frames}")


def from_argv(argv: list[str] | None = None) -> ServerConfig:
    """ServerConfig from command-line flags, falling back to WB_* environment variables."""
    env = os.environ.get
    d = ServerConfig()
    p = argparse.ArgumentParser(description="Slow-mode reparametrization workbench (Dash)")
    p.add_argument("--host", default=env("HOST", d.host))
    p.add_argument("--port", type=int, default=int(env("PORT", d.port)))
    p.add_argument("--workers", type=int, default=int(env("WB_WORKERS", d.workers)))
    p.add_argument(
        "--max-active-per-session",
        type=int,
        default=int(env("WB_MAX_ACTIVE", d.max_active_per_session)),
    )
    p.add_argument("--run-dir", default=env("WB_RUN_DIR", d.run_dir))
    p.add_argument(
        "--bundle-dir", action="append", default=None, help="CLI bundle folder (repeatable)"
    )
    p.add_argument(
        "--structure-dir", action="append", default=None, help="folder of *.pdb offered in the UI"
    )
    p.add_argument(
        "--max-upload-bytes", type=int, default=int(env("WB_MAX_UPLOAD", d.max_upload_bytes))
    )
    p.add_argument("--poll-ms", type=int, default=int(env("WB_POLL_MS", d.poll_ms)))
    p.add_argument("--frame-ms", type=int, default=int(env("WB_FRAME_MS", d.frame_ms)))
    p.add_argument(
        "--compile-cache-dir",
        default=env("WB_JAX_CACHE"),
        help="JAX compilation cache folder (default <run-dir>/.jax-cache; '' turns it off)",
    )
    p.add_argument(
        "--no-warm-up",
        dest="warm_up",
        action="store_false",
        default=env("WB_WARM_UP", "1") not in ("0", "off", "no", "false"),
        help="do not compile the opening demo's kernels at start",
    )
    p.add_argument(
        "--scheduler",
        default=env("SLOWMODE_SCHEDULER"),
        help="Dask scheduler for sweeps, tcp://HOST:PORT (default: an embedded LocalCluster)",
    )
    p.add_argument(
        "--sweep-workers", type=int, default=None, help="embedded cluster: workers (default: cores)"
    )
    a = p.parse_args(argv)
    return ServerConfig(
        scheduler=a.scheduler or None,
        sweep_workers=a.sweep_workers,
        host=a.host,
        port=a.port,
        workers=a.workers,
        max_active_per_session=a.max_active_per_session,
        run_dir=a.run_dir,
        bundle_dirs=tuple(a.bundle_dir) if a.bundle_dir else d.bundle_dirs,
        structure_dirs=tuple(a.structure_dir) if a.structure_dir else d.structure_dirs,
        max_upload_bytes=a.max_upload_bytes,
        poll_ms=a.poll_ms,
        frame_ms=a.frame_ms,
        compile_cache_dir=a.compile_cache_dir,
        warm_up=a.warm_up,
    )
