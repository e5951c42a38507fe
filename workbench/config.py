"""Server configuration: one frozen dataclass, read once at start-up.

Everything a deployment may want to change (bind address, worker pool, limits, where runs
are kept) lives here rather than in module globals, so tests can build a registry with a
temporary run directory and a tiny pool. Each setting is declared once, by ``setting``: its
default, its help text, its environment variable and whether it has a command-line flag;
``from_argv`` builds the flags from these declarations (``python app.py --help`` lists them).

The bind address comes from ``--host``/``--port`` or SLOWMODE_HOST/SLOWMODE_PORT, never from
the generic HOST/PORT variables that other tools set for their own purposes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket

SHARED_PDB = os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "pdb")
)
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")  # always allowed in the Host header
ANY_HOST = "*"  # allowed_hosts entry that turns the Host check off


def setting(default, help: str, env: str | None = None, flag: bool = True, kind: str = ""):
    """A ServerConfig field with its help, environment variable and flag (``from_argv``).

    kind: how the flag and variable are read: "" (the default's type), "list" (a repeatable
    flag; the variable holds comma-separated values), "off" (a flag turning a default-on
    setting off), "on" (a flag turning it on), "str?" / "int?" (may be None).
    """
    meta = {"help": help, "env": env, "flag": flag, "kind": kind}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Choices for one workbench server process (each field's help: ``setting`` below)."""

    host: str = setting("127.0.0.1", "bind address (loopback unless told otherwise)",
                        "SLOWMODE_HOST")  # fmt: skip
    port: int = setting(8050, "bind port", "SLOWMODE_PORT")
    allowed_hosts: tuple[str, ...] = setting(
        (),
        "a name the browser may use for this server in its Host header (repeatable; guards "
        "against DNS rebinding); always allowed: IP addresses, the bind address, localhost "
        "and, when bound beyond loopback, this machine's host name; '*' allows any",
        "SLOWMODE_ALLOWED_HOSTS",
        kind="list",
    )
    dev_server: bool = setting(
        False,
        "serve with Flask's development server (Werkzeug) instead of waitress: for debugging "
        "on one machine only",
        kind="on",
    )
    server_threads: int = setting(
        16, "HTTP request threads of the waitress server (polls, frames, exports)", "WB_THREADS"
    )
    workers: int = setting(2, "engine runs executing at once; more submissions queue",
                           "WB_WORKERS")  # fmt: skip
    engine_nice: int = setting(
        0,
        "CPU priority of engine work (runs, spectra, their JAX/XLA compute threads) as a "
        "Linux nice value, 0-19: above 0 the page and a browser on the same machine come "
        "first; runs then take longer while anything else wants the CPU (their reported wall "
        "times include it). Default 0: on the idle 2-core machine nice 10 drew no more live "
        "frames (4.8-5.5 per view against 5.0-5.5) and cost 15-20 % of the steps/s "
        "(docs/benchmarks-ui.md)",
        "WB_ENGINE_NICE",
    )
    max_active_per_session: int = setting(
        4,
        "queued + running runs and analysis tasks one browser session may hold, so one tab "
        "cannot fill the queue for a whole class",
        "WB_MAX_ACTIVE",
    )
    max_active_total: int = setting(
        24,
        "queued + running runs and analysis tasks on this server, all sessions together "
        "(session tokens are chosen by the browser, so the per-session limit alone bounds "
        "nothing)",
        "WB_MAX_ACTIVE_TOTAL",
    )
    max_tasks_total: int = setting(
        6,
        "queued + running analysis tasks (spectra) on this server; a session holds one at a "
        "time (a new spectrum replaces its previous one)",
        "WB_MAX_TASKS_TOTAL",
    )
    task_workers: int = setting(
        2,
        "analysis tasks executing at once, which is also the number of spectrum computations "
        "under way (a stopped spectrum's computation finishes in the background and counts)",
        "WB_TASK_WORKERS",
    )
    max_loaded_runs: int = setting(
        16,
        "finished runs whose rows and frames stay in memory (the most recently read); the "
        "others stay on disk and are reread when opened, so memory does not grow with the "
        "number of runs",
        "WB_MAX_LOADED_RUNS",
    )
    max_request_bytes: int = setting(
        10_000_000,
        "largest HTTP request body accepted (answered 413 above); uploads travel base64-"
        "encoded, so at least 2 x max_upload_bytes",
        "WB_MAX_REQUEST",
    )
    max_field_chars: int = setting(
        10_000,
        "longest text a form field may hold; a longer one is refused with the field's name",
        "WB_MAX_FIELD_CHARS",
    )
    run_dir: str = setting("runs", "finished runs are persisted here and re-indexed at start-up",
                           "WB_RUN_DIR")  # fmt: skip
    bundle_dirs: tuple[str, ...] = setting(
        ("runs", "results"),
        "folder of run bundles written by the CLI, listed read-only (repeatable)",
        kind="list",
    )
    structure_dirs: tuple[str, ...] = setting(
        (SHARED_PDB,), "folder whose *.pdb files are offered in the UI (repeatable)", kind="list"
    )
    max_upload_bytes: int = setting(
        2_000_000, "cap on uploaded structure files (stated in the UI)", "WB_MAX_UPLOAD"
    )
    uploads_per_session: int = setting(
        10, "uploads one browser session may hold (an identical file counts once)",
        "WB_UPLOADS_PER_SESSION",
    )  # fmt: skip
    upload_session_bytes: int = setting(
        10_000_000, "total bytes of one session's uploads", "WB_UPLOAD_SESSION_BYTES"
    )
    upload_total_bytes: int = setting(
        500_000_000, "total bytes of all sessions' uploads on this server",
        "WB_UPLOAD_TOTAL_BYTES",
    )  # fmt: skip
    upload_retention_s: int = setting(
        24 * 3600, "seconds an upload is kept (deleted at start-up, on upload and before use)",
        "WB_UPLOAD_RETENTION_S",
    )  # fmt: skip
    frame_ms: int = setting(
        50,
        "period of the browser's frame stream (/_wb/frames) for live 3D views; the stream "
        "sends only frames newer than the browser has, so 50 ms allows 20 frames/s",
        "WB_FRAME_MS",
    )
    poll_ms: int = setting(
        1000,
        "period of the Dash poll that updates the cards' status lines (and the charts, see "
        "--chart-ms); each poll's page update delays the live 3D frames: on the idle 2-core "
        "machine 1000 ms drew 8.7-9.3 frames/s per view at n=400 against 5.4-5.5 at 400 ms "
        "(docs/benchmarks-ui.md)",
        "WB_POLL_MS",
    )
    chart_ms: int = setting(
        3000,
        "while runs are live, the curves, speed-up table and projection charts are redrawn at "
        "most this often (at once when the runs end); the status lines follow every poll. "
        "Redrawing charts is most of the page's main-thread work during a live run",
        "WB_CHART_MS",
    )
    max_frames: int = setting(
        400, "frames kept per run for replay (older ones are thinned, never the last)",
        flag=False,
    )  # fmt: skip
    compile_cache_dir: str | None = setting(
        None,
        "JAX compilation cache folder, so a second run of the same shapes and a restarted "
        "server do not recompile (default <run-dir>/.jax-cache; '' turns it off)",
        "WB_JAX_CACHE",
        kind="str?",
    )
    warm_up: bool = setting(
        True,
        "compile the opening demo's kernels in the background at start (--no-warm-up: do not)",
        "WB_WARM_UP",
        kind="off",
    )
    scheduler: str | None = setting(
        None,
        "Dask scheduler for sweeps, tcp://HOST:PORT (default: an embedded LocalCluster of "
        "sweep_workers single-threaded process workers, started on the first sweep)",
        "SLOWMODE_SCHEDULER",
        kind="str?",
    )
    sweep_workers: int | None = setting(
        None, "embedded sweep cluster: workers (default: one per core)", kind="int?"
    )
    max_running_sweeps: int = setting(1, "sweeps running at once; more wait in a queue",
                                      flag=False)  # fmt: skip

    @property
    def compile_cache_path(self) -> str | None:
        """The compilation cache folder in use, or None when turned off."""
        if self.compile_cache_dir is None:
            return os.path.join(self.run_dir, ".jax-cache")
        return self.compile_cache_dir or None

    @property
    def host_names(self) -> tuple[str, ...]:
        """Host header names accepted besides IP addresses (lower case; ``ANY_HOST`` alone:
        any): the bind address, the loopback names, the allowed hosts and, when bound beyond
        loopback, this machine's host name."""
        if ANY_HOST in self.allowed_hosts:
            return (ANY_HOST,)
        names = [self.host, *LOOPBACK_HOSTS, *self.allowed_hosts]
        if self.host not in LOOPBACK_HOSTS and not self.host.startswith("127."):
            names.append(socket.gethostname())
        return tuple(dict.fromkeys(n.strip().strip("[]").lower() for n in names if n.strip()))

    def __post_init__(self):
        ranges = {
            "port": (1, 65535),
            "workers": (1, 64),
            "engine_nice": (0, 19),
            "server_threads": (1, 256),
            "max_active_per_session": (1, 1000),
            "max_active_total": (1, 100_000),
            "max_tasks_total": (1, 10_000),
            "task_workers": (1, 64),
            "max_loaded_runs": (1, 10_000),
            "max_field_chars": (100, 10_000_000),
            "uploads_per_session": (1, 10_000),
            "upload_session_bytes": (1, 10**12),
            "upload_total_bytes": (1, 10**13),
            "upload_retention_s": (60, 10**9),
            "poll_ms": (20, 10_000),
            "frame_ms": (10, 10_000),
            "chart_ms": (0, 60_000),
            "max_frames": (2, 1_000_000),
        }
        for name, (lo, hi) in ranges.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
        if self.max_active_total < self.max_active_per_session:
            raise ValueError(
                f"max_active_total ({self.max_active_total}) must be at least "
                f"max_active_per_session ({self.max_active_per_session})"
            )
        if self.max_request_bytes < 2 * self.max_upload_bytes:
            raise ValueError(
                f"max_request_bytes ({self.max_request_bytes}) must be at least twice "
                f"max_upload_bytes ({self.max_upload_bytes}): uploads travel base64-encoded"
            )


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def from_argv(argv: list[str] | None = None) -> ServerConfig:
    """ServerConfig from command-line flags, falling back to each setting's environment
    variable, then to its default."""
    p = argparse.ArgumentParser(description="Slow-mode reparametrization workbench (Dash)")
    flagged = []
    for f in dataclasses.fields(ServerConfig):
        meta = f.metadata
        if not meta.get("flag"):
            continue
        flagged.append(f)
        kind, env = meta["kind"], meta["env"]
        text = os.environ.get(env) if env else None
        hint = f" (env {env})" if env else ""
        about = meta["help"].replace("%", "%%")  # argparse %-formats help texts
        if kind == "list":
            default = tuple(s.strip() for s in (text or "").split(",") if s.strip()) or None
            name = _flag(f.name.removesuffix("s"))  # --allowed-host, --bundle-dir, ...
            p.add_argument(name, dest=f.name, action="append", default=None,
                           help=about + hint)  # fmt: skip
            p.set_defaults(**{f"_env_{f.name}": default})
        elif kind == "off":
            on = text is None or text.lower() not in ("0", "off", "no", "false")
            p.add_argument(_flag("no_" + f.name), dest=f.name, action="store_false", default=on,
                           help=about + hint)  # fmt: skip
        elif kind == "on":
            p.add_argument(_flag(f.name), dest=f.name, action="store_true", default=f.default,
                           help=about)  # fmt: skip
        else:
            convert = int if kind == "int?" or isinstance(f.default, int) else str
            try:
                default = f.default if text is None else convert(text)
            except ValueError:
                p.error(f"environment variable {env}={text!r} is not {convert.__name__}")
            p.add_argument(_flag(f.name), dest=f.name, type=convert, default=default,
                           help=about + hint)  # fmt: skip
    a = vars(p.parse_args(argv))
    values = {}
    for f in flagged:
        value = a[f.name]
        if f.metadata["kind"] == "list":
            value = tuple(value) if value else a.get(f"_env_{f.name}") or f.default
        elif f.name == "scheduler":
            value = value or None
        values[f.name] = value
    try:
        return ServerConfig(**values)
    except ValueError as err:
        p.error(str(err))
