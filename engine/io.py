"""The only engine module that touches the file system or the network.

Sections: run bundles (one run format on disk for the CLI and the workbench) and structure
sources (PDB files, uploads, the RCSB download cache).

Run bundles. A bundle is a directory:
  config.json     {"spec": RunSpec.to_dict(), "status", "message", "summary", "timings",
                  "system": {name, n_atoms, length_unit, energy_unit}, "versions"}; re-run it
                  with ``python -m engine run --config <dir>/config.json``.
  metrics.csv     one row per logged step, row 0 = step 0: step, stage, wall_time_s, energy,
                  grad_norm and the system's structure metrics (integer columns stay integers).
  frames.npz      frames_step [F] int, frames_x [F, n, 3], x_final [n, 3] (length unit).
  final.pdb       the final structure (written whenever the System is known).
  trajectory.pdb  every frame, on request (CLI ``--trajectory``).
A bundle written by the workbench server, ``run_dir/<run_id>/``, has two more files:
  meta.json       the workbench's bookkeeping: run_id, owner (session id), shared, status,
                  message, label, group, created / started / finished (Unix s), version, seed,
                  stage_switch_step, last ({step, stage, energy, wall_time}), timings. Written
                  when the run is queued and whenever its status or sharing changes; a status
                  still "queued" or "running" when a server starts means "interrupted".
  view.json       the viewer payload (bonds or PDB topology), so a replay need not rebuild
                  the system.
While a workbench run is queued or running its folder holds meta.json and a config.json with
the spec and status only; the other files appear when it ends, meta.json last. A folder with a
meta.json belongs to a workbench session: ``find_bundles`` skips it, so a server's runs are
never listed to everyone as CLI bundles. Every file is written to a temporary name in its
folder and moved into place with ``os.replace``: readers never see half a file.
"""

from __future__ import annotations

import functools
import io
import json
import os
import secrets
from pathlib import Path

import numpy as np

# ---- run bundles -------------------------------------------------------------------------

BUNDLE_FILES = ("config.json", "metrics.csv", "frames.npz", "final.pdb")
META_FILE = "meta.json"  # workbench bookkeeping (see the module docstring)
VIEW_FILE = "view.json"  # workbench viewer payload


def library_versions() -> dict:
    """Versions of the libraries that determine numerical results."""
    return dict(_library_versions())


@functools.lru_cache(maxsize=1)
def _library_versions() -> dict:  # looked up once per process: they cannot change under it
    import importlib.metadata as metadata
    import platform

    versions = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "optax", "numpy", "scipy", "mdtraj", "openmm"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def metrics_csv(metrics: dict) -> str:
    """Columns -> CSV text, one row per logged step."""
    import csv
    import io as _io

    names = list(metrics)
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    for row in zip(*(metrics[k] for k in names), strict=False):
        writer.writerow([_fmt(v) for v in row])
    return buf.getvalue()


def _fmt(v) -> str:
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return repr(float(v))


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary name in the same folder (created), then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def pdb_text(system, frames) -> str:
    """PDB text of one frame [n, 3] or a multi-model trajectory [F, n, 3]."""
    import tempfile

    from .topology import trajectory

    traj = trajectory(system, frames)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.pdb")
        traj.save_pdb(path)
        return Path(path).read_text()


def bundle_config(
    spec: dict | None,
    status: str,
    message: str = "",
    summary: dict | None = None,
    timings: dict | None = None,
    system=None,
) -> dict:
    """The config.json of a bundle (see the module docstring); ``system`` may be None.

    Args:
      spec: ``RunSpec.to_dict()`` (None only for a run whose spec is unknown).
      status, message: the run's outcome ("done", "stopped", "diverged", ...).
      summary: ``RunResult.summary()``; timings: seconds per phase.
      system: the built System, for its name, size and units; None leaves them out.
    """
    config = {
        "spec": spec,
        "status": status,
        "message": message,
        "summary": summary or {},
        "timings": timings or {},
    }
    if system is not None:
        config["system"] = {
            "name": system.name,
            "n_atoms": system.n_atoms,
            "length_unit": system.length_unit,
            "energy_unit": system.energy_unit,
        }
    config["versions"] = library_versions()
    return config


def write_bundle_data(
    out_dir,
    config: dict,
    metrics: dict,
    frames_step,
    frames_x,
    x_final,
    *,
    system=None,
    view: dict | None = None,
    trajectory: bool = False,
) -> Path:
    """Write a bundle from plain values into ``out_dir`` (created); returns the directory.

    Args:
      config: ``bundle_config(...)``.
      metrics: column name -> [n_rows] array, row 0 = step 0.
      frames_step: [F] int; frames_x: [F, n, 3]; x_final: [n, 3] (length unit).
      system: the built System; needed for final.pdb / trajectory.pdb (skipped when None).
      view: the workbench's viewer payload, written as view.json when given.
      trajectory: also write trajectory.pdb (all frames).
    """
    out = Path(out_dir)
    _atomic_write(out / "metrics.csv", metrics_csv(metrics).encode())
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        frames_step=np.asarray(frames_step, np.int64),
        frames_x=np.asarray(frames_x),
        x_final=np.asarray(x_final),
    )
    _atomic_write(out / "frames.npz", buf.getvalue())
    if system is not None:
        _atomic_write(out / "final.pdb", pdb_text(system, x_final).encode())
        if trajectory:
            _atomic_write(out / "trajectory.pdb", pdb_text(system, frames_x).encode())
    if view is not None:
        write_json(out / VIEW_FILE, view)
    write_json(out / "config.json", config, indent=2)
    return out


def write_bundle(result, out_dir, *, trajectory: bool = False) -> Path:
    """Write a RunResult as a bundle in ``out_dir`` (created); returns the directory."""
    config = bundle_config(
        result.spec.to_dict(),
        result.status,
        result.message,
        result.summary(),
        result.timings,
        result.system,
    )
    return write_bundle_data(
        out_dir,
        config,
        result.metrics,
        result.frames_step,
        result.frames_x,
        result.x_final,
        system=result.system,
        trajectory=trajectory,
    )


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")


def write_json(path, obj, *, indent: int = 1) -> None:
    """Write ``obj`` as JSON atomically (numpy scalars and arrays become numbers and lists)."""
    _atomic_write(Path(path), json.dumps(obj, indent=indent, default=_json_default).encode())


def is_bundle(path) -> bool:
    """True when ``path`` holds the files ``read_bundle`` needs (config, metrics, frames)."""
    path = Path(path)
    return all((path / f).is_file() for f in BUNDLE_FILES[:3])


def _column(cells: list[str]) -> np.ndarray:
    """A metrics.csv column: int64 when every cell is an integer, else float64."""
    try:
        return np.array([int(c) for c in cells], np.int64) if cells else np.zeros(0)
    except ValueError:
        return np.array([float(c) for c in cells])


class BundleError(ValueError):
    """A run bundle's file is missing or damaged (the message names the file and why)."""


def read_bundle(path) -> dict:
    """Load a bundle (a CLI bundle or a finished workbench run), validating every file.

    Returns:
      {"config": dict, "metrics": {col: [n] array}, "frames_step" [F], "frames_x" [F, n, 3],
      "x_final" [n, 3], "view": view.json's payload or None}. A damaged view.json reads as
      None (the caller can rebuild the view from the spec); its reason is in "problems".

    Raises:
      BundleError (a ValueError): config.json, metrics.csv or frames.npz is missing or
      damaged (truncated, not the expected shape); the message says which and why.
    """
    path = Path(path)
    missing = [f for f in BUNDLE_FILES[:3] if not (path / f).exists()]
    if missing:
        raise BundleError(f"{path} is not a run bundle: missing {', '.join(missing)}")
    config = _bundle_part(path, "config.json", _read_config)
    metrics = _bundle_part(path, "metrics.csv", _read_metrics)
    frames = _bundle_part(path, "frames.npz", _read_frames)
    view, problems = None, []
    if (path / VIEW_FILE).is_file():
        try:
            view = read_json(path / VIEW_FILE)
            if not isinstance(view, dict):
                raise ValueError("not a JSON object")
        except ValueError as err:
            view = None
            problems.append(f"{VIEW_FILE}: {err}")
    return {"config": config, "metrics": metrics, **frames, "view": view, "problems": problems}


def _bundle_part(path: Path, name: str, read):
    """read(path / name), any failure raised as BundleError naming the file."""
    try:
        return read(path / name)
    except Exception as err:  # truncated zips, short rows, wrong shapes: all "damaged"
        raise BundleError(f"{name} is damaged: {err}") from None


def _read_config(file: Path) -> dict:
    config = json.loads(file.read_text())
    if not isinstance(config, dict):
        raise ValueError("not a JSON object")
    return config


def _read_metrics(file: Path) -> dict:
    """metrics.csv's columns; every row must have the header's cells, and end with a newline
    (a file cut inside its last row is damaged even if that row still parses)."""
    import csv

    text = file.read_text()
    if text and not text.endswith("\n"):
        raise ValueError("the last row is cut off")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or not rows[0]:
        raise ValueError("no header row")
    names, body = rows[0], rows[1:]
    for i, row in enumerate(body, start=1):
        if len(row) != len(names):
            raise ValueError(f"row {i} has {len(row)} of {len(names)} cells")
    return {n: _column([r[i] for r in body]) for i, n in enumerate(names)}


def _read_frames(file: Path) -> dict:
    """frames.npz's arrays with their shapes checked: frames_step [F], frames_x [F, n, 3],
    x_final [n, 3]."""
    with np.load(file) as data:
        frames = {k: data[k] for k in ("frames_step", "frames_x", "x_final")}
    step, x, final = frames["frames_step"], frames["frames_x"], frames["x_final"]
    if step.ndim != 1 or x.ndim != 3 or x.shape[0] != len(step) or x.shape[2:] != (3,):
        raise ValueError(f"frames of shapes {step.shape} and {x.shape}")
    if final.ndim != 2 or final.shape[1] != 3 or (len(x) and x.shape[1] != len(final)):
        raise ValueError(f"x_final of shape {final.shape}")
    return frames


def find_bundles(dirs, max_depth: int = 2) -> list[tuple[str, dict]]:
    """[(absolute folder, config.json)] of the bundles under ``dirs`` (depth <= max_depth).

    A folder with a meta.json belongs to a workbench session and is skipped (with everything
    below it); unreadable config files are skipped, never fatal.
    """
    found = []

    def walk(path: Path, depth: int) -> None:
        if (path / META_FILE).exists():
            return
        if is_bundle(path):
            try:
                config = json.loads((path / "config.json").read_text())
            except (OSError, ValueError):
                return
            if isinstance(config, dict):  # valid JSON of another shape is skipped as well
                found.append((str(path.resolve()), config))
            return
        if depth < max_depth:
            for child in sorted(p for p in path.iterdir() if p.is_dir()):
                walk(child, depth + 1)

    for d in dirs:
        if os.path.isdir(d):
            walk(Path(d), 0)
    return found


def run_folders(root) -> list[Path]:
    """The workbench run folders directly under ``root`` (those holding a meta.json), sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if (d / META_FILE).is_file())


def folder_mtime(path) -> float:
    """A folder's modification time (Unix s), 0.0 when it cannot be read (bundle listings)."""
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def read_meta(folder) -> dict:
    """A run folder's meta.json. Raises ValueError when it is missing or damaged."""
    meta = read_json(Path(folder) / META_FILE)
    if not isinstance(meta, dict):
        raise ValueError(f"{folder}/{META_FILE} is not a JSON object")
    return meta


def write_meta(folder, meta: dict) -> None:
    """Write a run folder's meta.json (atomically; the folder is created)."""
    write_json(Path(folder) / META_FILE, meta)


def read_json(path) -> dict:
    """Read a JSON file (a bundle's config.json or a spec); clear error if unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read JSON from {path}: {e}") from None


def write_text(path, text: str) -> None:
    """Write a small text file atomically (summary tables, JSON results)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, text.encode())


# ---- structure sources (proteins) ---------------------------------------------------------
# Everything here returns bytes or parsed objects; the protein builder (engine/protein/build.py)
# never opens a file itself. Files are written only under ``structure_cache_dir()``.

import os as _os  # noqa: E402
import re as _re  # noqa: E402
import tempfile as _tempfile  # noqa: E402
import urllib.error as _urlerror  # noqa: E402
import urllib.request as _urlrequest  # noqa: E402
import warnings as _warnings  # noqa: E402

PDB_URL_ENV = "SLOWMODE_PDB_URL"  # base URL for PDB-id downloads: <base>/<ID>.pdb
CACHE_ENV = "SLOWMODE_CACHE"  # cache folder (downloads, parse scratch files)
PDB_DIRS_ENV = "SLOWMODE_PDB_DIRS"  # folders searched for a PDB id first (os.pathsep list)
# the structures on a project machine (../shared/data/pdb from the project's root), the
# workbench's default structure folder too (workbench/config.py)
SHARED_PDB_DIR = _os.path.abspath(
    _os.path.join(_os.path.dirname(__file__), "..", "..", "shared", "data", "pdb")
)
DEFAULT_PDB_URL = "https://files.rcsb.org/download"
MAX_STRUCTURE_BYTES = 64 * 2**20  # larger files are refused before reading them
_PDB_ID = _re.compile(r"^[0-9][A-Za-z0-9]{3}$")


class StructureError(ValueError):
    """A structure source or its contents cannot be used; the message is shown to the user."""


def structure_cache_dir() -> str:
    """The folder for downloaded structures: $SLOWMODE_CACHE, else ~/.cache/slowmode-workbench."""
    path = _os.environ.get(CACHE_ENV) or _os.path.join(
        _os.path.expanduser("~"), ".cache", "slowmode-workbench"
    )
    return _os.path.abspath(path)


def is_pdb_id(text: str) -> bool:
    """True for a 4-character PDB id such as "2JOF" (a digit, then three letters or digits)."""
    return bool(_PDB_ID.match(text or ""))


def read_structure_file(path: str) -> bytes:
    """Read a structure file from disk, refusing missing, non-regular or huge files.

    Raises:
      StructureError: the path does not exist, is not a file, or exceeds MAX_STRUCTURE_BYTES.
    """
    if not _os.path.isfile(path):
        raise StructureError(f"structure file not found: {path!r}")
    size = _os.path.getsize(path)
    if size > MAX_STRUCTURE_BYTES:
        raise StructureError(
            f"structure file {path!r} is {size / 2**20:.0f} MiB; the limit is "
            f"{MAX_STRUCTURE_BYTES // 2**20} MiB"
        )
    with open(path, "rb") as fh:
        return fh.read()


def bundled_villin_pdb() -> bytes:
    """OpenMM's own test structure: villin headpiece HP35 (N68H) in a water box, as bytes."""
    import openmm.app

    folder = _os.path.dirname(openmm.app.__file__)
    return read_structure_file(_os.path.join(folder, "data", "test.pdb"))


def local_pdb_dirs() -> tuple[str, ...]:
    """The structure folders: where structure names and PDB ids resolve before the cache and
    the network: $SLOWMODE_PDB_DIRS (separated by os.pathsep; a workbench server puts its
    structure folders and its uploads folder there, ``use_structure_dirs``), then the project
    machine's shared structures."""
    listed = [d for d in (_os.environ.get(PDB_DIRS_ENV) or "").split(_os.pathsep) if d]
    return tuple(dict.fromkeys([*listed, SHARED_PDB_DIR]))


_INSTALLED_DIRS: list[str] = []  # what the last use_structure_dirs call put in the variable


def use_structure_dirs(dirs) -> None:
    """Make structure names and PDB ids resolve in ``dirs`` first, in this process and in the
    processes it starts from now on (sweep workers): ``dirs`` go at the front of
    $SLOWMODE_PDB_DIRS, replacing those of the previous call (a server configures once)."""
    global _INSTALLED_DIRS
    mine = [_os.path.abspath(d) for d in dirs]
    listed = [d for d in (_os.environ.get(PDB_DIRS_ENV) or "").split(_os.pathsep) if d]
    kept = [d for d in listed if d not in _INSTALLED_DIRS]
    _os.environ[PDB_DIRS_ENV] = _os.pathsep.join(dict.fromkeys([*mine, *kept]))
    _INSTALLED_DIRS = mine


# A structure name: a file in a structure folder ("2JOF_native.pdb") or an upload's
# "<upload id>/<file name>"; specs and exported configs carry names, never server paths.
_NAME_PART = _re.compile(r"^[A-Za-z0-9_][A-Za-z0-9 _.+()-]{0,99}$")
UPLOAD_NAME = _re.compile(r"^[0-9a-f]{16}/[^/]+$")  # workbench uploads: "<16 hex>/<file name>"


def is_structure_name(text: str | None) -> bool:
    """True for a relative name of one or two parts made of letters, digits, " _.+()-" (no
    part starting with a dot, so never ".." and never an absolute path)."""
    parts = (text or "").split("/")
    return 1 <= len(parts) <= 2 and all(_NAME_PART.match(p) for p in parts)


def find_structure(name: str, dirs=None) -> str | None:
    """Path of the structure file called ``name`` (``is_structure_name``) in the first of
    ``dirs`` (default ``local_pdb_dirs()``) that holds it, or None."""
    if not is_structure_name(name):
        return None
    for folder in local_pdb_dirs() if dirs is None else dirs:
        path = _os.path.join(folder, *name.split("/"))
        if _os.path.isfile(path):
            return path
    return None


def find_local_pdb(pdb_id: str, dirs=None) -> str | None:
    """Path of a structure file for ``pdb_id`` in ``dirs`` (default ``local_pdb_dirs()``), or
    None: ``<ID>.pdb`` first, then ``<ID>_native.pdb``, names compared case-insensitively;
    folders that do not exist are skipped."""
    if not is_pdb_id(pdb_id):
        return None
    wanted = (f"{pdb_id}.pdb".lower(), f"{pdb_id}_native.pdb".lower())
    for folder in local_pdb_dirs() if dirs is None else dirs:
        try:
            names = {name.lower(): name for name in _os.listdir(folder)}
        except OSError:
            continue
        for want in wanted:
            path = _os.path.join(folder, names.get(want, want))
            if want in names and _os.path.isfile(path):
                return path
    return None


def fetch_pdb(
    pdb_id: str,
    *,
    base_url: str | None = None,
    cache_dir: str | None = None,
    timeout: float = 20.0,
    local_dirs=None,
) -> bytes:
    """The PDB-format entry of a PDB id: a structure on this machine, else the on-disk cache,
    else downloaded once.

    Args:
      pdb_id: 4-character PDB id, any case ("2jof").
      base_url: download from ``<base_url>/<ID>.pdb``; default $SLOWMODE_PDB_URL, else RCSB.
      cache_dir: default ``structure_cache_dir()``; the file is stored as ``pdb/<ID>.pdb``.
      timeout: seconds for the HTTP request.
      local_dirs: folders searched first for ``<ID>.pdb`` or ``<ID>_native.pdb`` (any case);
        default ``local_pdb_dirs()``; ``()`` skips the search.

    Raises:
      StructureError: malformed id, unknown id (HTTP 404), no network, or a reply that is not
        a PDB file. One line each, no traceback for the user.
    """
    if not is_pdb_id(pdb_id):
        raise StructureError(f"{pdb_id!r} is not a PDB id (4 characters, e.g. 2JOF)")
    pdb_id = pdb_id.upper()
    local = find_local_pdb(pdb_id, local_dirs)
    if local is not None:
        return read_structure_file(local)
    folder = _os.path.join(cache_dir or structure_cache_dir(), "pdb")
    cached = _os.path.join(folder, f"{pdb_id}.pdb")
    if _os.path.isfile(cached):
        return read_structure_file(cached)
    base = (base_url or _os.environ.get(PDB_URL_ENV) or DEFAULT_PDB_URL).rstrip("/")
    url = f"{base}/{pdb_id}.pdb"
    try:
        with _urlrequest.urlopen(url, timeout=timeout) as reply:
            data = reply.read(MAX_STRUCTURE_BYTES + 1)
    except _urlerror.HTTPError as err:
        if err.code == 404:
            message = f"unknown PDB id {pdb_id}: {url} answered 404 (not found)"
        else:
            message = f"could not download PDB {pdb_id} from {url}: HTTP {err.code}"
        raise StructureError(message) from None
    except (_urlerror.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise StructureError(
            f"could not download PDB {pdb_id} from {url} ({reason}) and found no {pdb_id}.pdb "
            f"or {pdb_id}_native.pdb among the structures on this machine nor in the download "
            "cache; the machine may be offline: upload the file or choose a structure on this "
            "machine instead"
        ) from None
    if len(data) > MAX_STRUCTURE_BYTES:
        raise StructureError(f"PDB {pdb_id} from {url} exceeds {MAX_STRUCTURE_BYTES // 2**20} MiB")
    if not _re.search(rb"^(ATOM  |HETATM)", data[: 2**20], _re.MULTILINE):
        raise StructureError(f"the reply from {url} is not a PDB file (no ATOM records)")
    _os.makedirs(folder, exist_ok=True)
    fd, tmp = _tempfile.mkstemp(dir=folder, suffix=".part")
    with _os.fdopen(fd, "wb") as fh:
        fh.write(data)
    _os.replace(tmp, cached)  # atomic: concurrent downloads of one id never see half a file
    return data


def parse_pdb_bytes(data: bytes):
    """Parse PDB-format text with mdtraj (all models as frames).

    mdtraj reads only from a path, so the bytes go through a scratch file in the cache folder,
    removed at once.

    Returns:
      mdtraj.Trajectory, positions in nm.

    Raises:
      StructureError: mdtraj cannot read the text (the message names its error).
    """
    import mdtraj

    folder = _os.path.join(structure_cache_dir(), "scratch")
    _os.makedirs(folder, exist_ok=True)
    fd, tmp = _tempfile.mkstemp(dir=folder, suffix=".pdb")
    try:
        with _os.fdopen(fd, "wb") as fh:
            fh.write(data)
        with _warnings.catch_warnings():
            # dummy CRYST1 records and odd element columns are common and harmless here
            _warnings.simplefilter("ignore")
            return mdtraj.load_pdb(tmp, standard_names=True)
    except StructureError:
        raise
    except Exception as err:  # mdtraj raises many types on bad text
        raise StructureError(f"could not read the PDB text: {type(err).__name__}: {err}") from None
    finally:
        _os.remove(tmp)


def write_protein_pdb(path: str, x, topology) -> None:
    """Write positions x [n_atoms, 3] (nm) with an mdtraj Topology as a PDB file (mdtraj)."""
    import mdtraj
    import numpy as np

    traj = mdtraj.Trajectory(np.asarray(x, dtype=np.float64)[None], topology)
    traj.save_pdb(path, force_overwrite=True)


def structure_source_bytes(source: str) -> tuple[bytes, str]:
    """Resolve a structure source to its bytes and a short label.

    Args:
      source: "villin" (the embedded default protein); a 4-character PDB id, resolved only
        through the structure folders, the download cache and the network (``fetch_pdb``),
        never as a file of the working directory; a structure name (``find_structure``:
        "2JOF_native.pdb", an upload's "<id>/<file>"), looked up in the structure folders
        first; else a path to a PDB file (the CLI).

    Returns:
      (data, label): the file's bytes and e.g. "villin HP35", "2JOF", "native.pdb".

    Raises:
      StructureError: none of these, or the file/download fails (see ``fetch_pdb``).
    """
    source = (source or "").strip()
    if source.lower() == "villin":
        return bundled_villin_pdb(), "villin HP35"
    if is_pdb_id(source):
        return fetch_pdb(source), source.upper()
    named = find_structure(source)
    if named is not None:
        return read_structure_file(named), _os.path.basename(source)
    if _os.path.isfile(source):
        return read_structure_file(source), _os.path.basename(source)
    if UPLOAD_NAME.match(source):
        raise StructureError(
            f"the uploaded structure {source.split('/')[1]!r} is not on this machine (uploads "
            "stay on their workbench server for a retention period): upload the file again, "
            "or give its path as system.pdb"
        )
    raise StructureError(
        f"structure {source!r} is neither an existing file, a structure on this machine, a "
        "4-character PDB id nor 'villin'"
    )
