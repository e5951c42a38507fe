"""Load-and-fault benchmark of the workbench server (issue 10), loopback only (not a test).

    python -m bench.bench_reliability            # full: 5-7 min on the 2-core machine at load 13-20
    python -m bench.bench_reliability --quick    # smoke: about 3 minutes, smallest settings

It starts ``python app.py`` on a free loopback port with a temporary run directory
(``server_command``: the one place that says how the server is launched) and talks to it
only through what a browser uses: the page, ``/_dash-layout``, ``/_dash-dependencies``,
Dash callback POSTs to ``/_dash-update-component`` built from those dependencies (a small
model of the page stands in for dash-renderer: its components, their properties, the
callbacks an update fires) and the ``/_wb/frames`` stream. Phases:

1. load, two identical rounds: N sessions (fresh page loads, so fresh session tokens) at once,
   each clicking Run M times (two methods side by side, lj-loop n = 60-100, a few hundred
   steps), polling like the page does until the runs end, then opening every run and
   exporting every format the replay offers. The server's RSS is read before and after each
   round: round 2 should not grow it by more than 10 %.
2. fuzz: at least ``--fuzz`` values per field type (int, float, choice, bool, text and the
   other widgets: methods, tab, protein source, upload token, session, threshold, run id),
   each sent as the page sends a changed value (form validation, risks, summary) and, when
   validation refuses it or up to ``--fuzz-starts`` times when it accepts it, as a Run
   click. Every value is marked browser-sendable (what the widget itself can produce: any
   string in a text box, an option of a dropdown) or hand-crafted (any other JSON).
3. damaged files: finished runs get a truncated or garbled frames.npz / metrics.csv /
   view.json / meta.json / config.json, a meta.json of the wrong shape, a bad "created";
   the server restarts and every session's list, open and export is checked: a run with a
   damaged data file listed "damaged" naming the file before anyone opens it, one whose
   meta.json alone is damaged listed as before with "meta rebuilt", one whose owner cannot
   be read listed to nobody; nothing else lost or changed.
4. kills: runs are started (2 running, 2 queued) and the server gets SIGINT, SIGTERM or
   SIGKILL; it is restarted and every run must be listed with an honest status
   (stopped / interrupted / cancelled for those that were active), no half-written file
   (``.*.tmp`` left behind, a bundle file that does not read), and everything from before
   still there.

Errors are counted by kind: HTTP 5xx (with the callback, field and value that caused them),
tracebacks in the server logs, connection failures (server dead); runs lost or misreported
are counted against a ledger of every run started. Results: bench/results/reliability.json
and the table in docs/benchmarks-reliability.md. Machine load (os.getloadavg) is recorded
at every phase: on the shared 2-core machine other people's jobs run beside it.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "reliability.json"
DOC = ROOT / "docs" / "benchmarks-reliability.md"
HOST = "127.0.0.1"
RSS_FLAT = 0.10  # round 2 may grow the server's RSS by at most this fraction
POLL_S = 0.4  # simulated clients poll as the page did when measured (poll_ms was 400 ms)
HONEST_AFTER_KILL = ("stopped", "interrupted", "cancelled")


# ---- launching the server (one place: other branches change how app.py is served) -------------
def server_command(port: int, run_dir: str, workers: int = 2) -> list[str]:
    """The command line of one workbench server on loopback ``port`` keeping runs in
    ``run_dir`` (also its only bundle folder, so nothing else is listed); no warm-up, so the
    load is only what the benchmark sends."""
    return [
        sys.executable,
        "app.py",
        "--host",
        HOST,
        "--port",
        str(port),
        "--run-dir",
        run_dir,
        "--bundle-dir",
        run_dir,
        "--workers",
        str(workers),
        "--no-warm-up",
    ]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """One ``python app.py`` process, its log file and its memory."""

    def __init__(self, run_dir: str, log_dir: str, name: str):
        self.run_dir, self.name = run_dir, name
        self.port = free_port()
        self.log_path = Path(log_dir) / f"server-{name}.log"
        self.proc: subprocess.Popen | None = None
        self.start_s = self.exit_s = None

    def start(self, timeout: float = 180.0) -> Server:
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
        env.pop("HOST", None), env.pop("PORT", None)
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child holds it)
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            server_command(self.port, self.run_dir),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # as in a terminal: a shell starting this script in the background may have set
            # SIGINT to "ignore", which the server would inherit (then Ctrl-C is never seen)
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        log.close()
        end = t0 + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name} exited with {self.proc.returncode}")
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                conn.request("GET", "/")
                ok = conn.getresponse().status == 200
                conn.close()
                if ok:
                    self.start_s = round(time.monotonic() - t0, 2)
                    return self
            except OSError:
                pass
            time.sleep(0.1)  # the server is importing JAX: poll its port
        raise TimeoutError(f"server {self.name} did not answer within {timeout} s")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_mb(self) -> float | None:
        try:
            import psutil

            return round(psutil.Process(self.pid).memory_info().rss / 2**20, 1)
        except Exception:
            return None

    def signal(self, signum: int, wait: float = 20.0) -> dict:
        """Send ``signum``; how long the process took to exit (None: it did not, and was
        killed after ``wait`` seconds)."""
        t0 = time.monotonic()
        self.proc.send_signal(signum)
        try:
            self.proc.wait(timeout=wait)
            self.exit_s = round(time.monotonic() - t0, 2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.exit_s = None
        return {"signal": signal.Signals(signum).name, "exit_s": self.exit_s}

    def stop(self) -> dict:
        return self.signal(signal.SIGTERM) if self.alive() else {"signal": None, "exit_s": 0}

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# ---- pure helpers: Dash ids, payloads, layouts (tests/test_bench_reliability.py) -----------------
def id_key(cid) -> str:
    """A component id as Dash writes it in prop ids and responses (dicts: sorted, compact)."""
    if isinstance(cid, dict):
        return json.dumps(cid, sort_keys=True, separators=(",", ":"))
    return str(cid)


def spec_id(raw):
    """An id from /_dash-dependencies: a pattern id arrives as its JSON text."""
    if isinstance(raw, str) and raw.startswith("{"):
        return json.loads(raw)
    return raw


def parse_outputs(output: str) -> list[tuple[object, str]]:
    """[(id, property)] of a dependency's output string ("a.children",
    "..a.children...b.data@1f2e.." for several outputs; ids may be pattern JSON)."""
    parts = output[2:-2].split("...") if output.startswith("..") else [output]
    out = []
    for part in parts:
        if part.startswith("{"):
            end = part.rindex("}") + 1
            out.append((json.loads(part[:end]), part[end + 1 :]))
        else:
            cid, _, prop = part.rpartition(".")
            out.append((cid, prop))
    return out


def callback_name(outputs) -> str:
    """A callback named by its outputs, as a reader finds them in the panels' code:
    "wb-run-msg.children, field-msg(ALL).children" (no allow_duplicate suffixes)."""
    parts = []
    for cid, prop in outputs:
        if isinstance(cid, dict):
            wild = ",".join(k for k, v in sorted(cid.items()) if isinstance(v, list))
            cid = f"{cid.get('type')}({wild or '-'})"
        parts.append(f"{cid}.{prop.split('@')[0]}")
    return ", ".join(parts)


def is_pattern(cid) -> bool:
    return isinstance(cid, dict) and any(isinstance(v, list) for v in cid.values())


def matches(pattern, cid) -> bool:
    """``cid`` is matched by ``pattern`` (a plain id, or a dict id with ALL/MATCH wildcards)."""
    if not isinstance(pattern, dict):
        return pattern == cid
    if not isinstance(cid, dict) or set(cid) != set(pattern):
        return False
    return all(isinstance(v, list) or cid[k] == v for k, v in pattern.items())


def components(tree):
    """Every (id, props) of a Dash component tree (layout JSON or a callback's returned
    children), including components inside any property (tab labels, option labels)."""
    if isinstance(tree, list):
        for item in tree:
            yield from components(item)
    elif isinstance(tree, dict):
        if "props" in tree and "type" in tree and isinstance(tree["props"], dict):
            props = tree["props"]
            if "id" in props:
                yield props["id"], props
            for value in props.values():
                yield from components(value)
        else:
            for value in tree.values():
                yield from components(value)


def runs_in_table(tree) -> list[tuple[str, str]]:
    """[(run_id, status)] of the rendered runs list (workbench/panels/runs.py runs_table):
    each row's status cell has the class wb-st-<status>, its Open button the run id."""
    out = []
    for row in _find(tree, "Tr"):
        status, run_id = None, None
        for comp in _walk(row):
            props = comp.get("props", {})
            cls = props.get("className") or ""
            if comp.get("type") == "Td" and cls.startswith("wb-st-"):
                status = cls[len("wb-st-") :]
            cid = props.get("id")
            if isinstance(cid, dict) and cid.get("type") == "run-open":
                run_id = cid.get("index")
        if run_id:
            out.append((run_id, status))
    return out


def _walk(tree):
    if isinstance(tree, list):
        for item in tree:
            yield from _walk(item)
    elif isinstance(tree, dict) and "props" in tree:
        yield tree
        yield from _walk(tree["props"].get("children"))


def _find(tree, type_: str):
    return [c for c in _walk(tree) if c.get("type") == type_]


def text_of(tree) -> str:
    """The visible text of a component tree (strings joined)."""
    if isinstance(tree, str):
        return tree
    if isinstance(tree, (int, float)):
        return str(tree)
    if isinstance(tree, list):
        return " ".join(text_of(t) for t in tree)
    if isinstance(tree, dict) and "props" in tree:
        return text_of(tree["props"].get("children"))
    return ""


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def strict_json(raw: bytes):
    """json.loads as a browser's JSON.parse: NaN and Infinity tokens are errors."""
    return json.loads(raw, parse_constant=_no_constant)


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def traceback_sites(log: str, root: str = str(ROOT)) -> collections.Counter:
    """{"<file>:<line> <function>: <exception type>": count} of the tracebacks in a server
    log: the innermost frame in the project's own code (not a library) and what was raised."""
    out = collections.Counter()
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if "Traceback (most recent call last)" not in line:
            continue
        j, site = i + 1, "?"
        while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
            m = _FRAME.search(lines[j])
            if m and m.group(1).startswith(root) and "/.venv/" not in m.group(1):
                site = f"{os.path.relpath(m.group(1), root)}:{m.group(2)} {m.group(3)}"
            j += 1
        exc = lines[j].split(":")[0][:60] if j < len(lines) else "(cut off)"
        out[f"{site}: {exc}"] += 1
    return out


def rss_flat(after_round1: float | None, after_round2: float | None, tol: float = RSS_FLAT):
    """(growth over round 2 as a fraction, within ``tol``), None when RSS was not read."""
    if not after_round1 or not after_round2:
        return None, None
    growth = after_round2 / after_round1 - 1.0
    return round(growth, 4), growth <= tol


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def garble(path: Path, seed: int = 0) -> None:
    """Overwrite the middle third of the file with random bytes (same length)."""
    data = bytearray(path.read_bytes())
    rng = random.Random(seed)
    lo, hi = len(data) // 3, 2 * len(data) // 3
    data[lo:hi] = bytes(rng.randrange(256) for _ in range(hi - lo))
    path.write_bytes(bytes(data))


# ---- fuzz values ---------------------------------------------------------------------------------
class Fuzz:
    """A fuzz value: ``browser`` tells whether the widget itself can send it."""

    __slots__ = ("value", "browser", "what")

    def __init__(self, value, browser: bool, what: str):
        self.value, self.browser, self.what = value, browser, what

    def short(self) -> str:
        text = repr(self.value)
        return text if len(text) <= 60 else f"{text[:40]}…({len(text)} chars)"


# fmt: off
NUMBER_TEXTS = (
    "", " ", "0", "-0", "1", "-1", "0.5", "-0.5", "1e3", "1E3", "1e-3", "5.", ".5", "+5", " 7 ",
    "\t8\n", "1e308", "1.8e308", "1e309", "-1e309", "1e-400", "4.9e-324", "nan", "NaN", "-nan",
    "inf", "-inf", "Infinity", "-Infinity", "+inf", "1_000", "0x10", "0b1", "0o7", "1,5", "1.5.2",
    "1e", "e5", "--1", "1-", "½", "２", "٣", "१", "1e1000000", "9" * 400, "1" + "0" * 30,
    "-" + "9" * 30, "2**31", "10^3", "1 000", "one", "null", "None", "true", "[]", "{}", "'1'",
    '"1"', "1;2", "%d", "${n}",
)
# fmt: on
# fmt: off
TEXTS = (
    "", " ", "a", "villin", "2JOF", "2jof", "9zzz", "1VII", "../../etc/passwd", "/etc/passwd",
    "<script>alert(1)</script>", "'; DROP TABLE runs; --", "%s%s%n", "{{7*7}}", "😀" * 10,
    "漢字テキスト", "\u202eRTL", "a\u200bb", "e\u0301", "\x00", "a\x00b", "\x1b[31m", "\r\n",
    "NLYIQWLKDGGPSSGRPPPS", "ACDEFGHIKLMNPQRSTVWY" * 5, "ACDEFGHIKLMNPQRSTVWY" * 6, "XXXX",
    "acdef", " N L Y ", "\\", '"', "'", "`", "null", "NaN", "0", "-1",
)
# fmt: on
# fmt: off
HAND_VALUES = (
    None, 0, 1, -1, 2**31, 2**63, 10**30, -(10**30), 0.5, -0.0, 1e308, -1e308, 5e-324, math.nan,
    math.inf, -math.inf, True, False, [], [1], [True], [False], ["a"], [None], [1, 2, 3], [[[]]],
    {}, {"a": 1}, {"value": 1}, {"props": {"children": "x"}}, "\ud800", "a\udfffb",
)
# fmt: on


def _random_number_text(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return str(rng.randint(-(10**6), 10**6))
    if kind == 1:
        return f"{rng.uniform(-1, 1) * 10 ** rng.randint(-12, 12):.6g}"
    if kind == 2:
        return f"{rng.choice('+-')}{rng.randint(1, 9)}e{rng.randint(-500, 500)}"
    if kind == 3:
        return "".join(rng.choice("0123456789.-+eE ") for _ in range(rng.randint(1, 12)))
    if kind == 4:
        return str(rng.randint(0, 10 ** rng.randint(1, 60)))
    return rng.choice(NUMBER_TEXTS) + rng.choice(("", "0", "e", ".", "x", " ", "1"))


UNICODE_POOL = (
    "aZ09 _-.,;:!?/\\'\"<>{}[]()&%$#@~^*+=|éßøΩЖ中文日本語한국어😀🚀\u200b\u202e\u0301\t\n\x00\x07"
)


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice(UNICODE_POOL) for _ in range(rng.randint(0, 40)))


def _random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return rng.randint(-(10**12), 10**12)
    if kind == 1:
        return rng.uniform(-1, 1) * 10 ** rng.randint(-300, 300)
    if kind == 2:
        return rng.choice((None, True, False))
    if kind == 3:
        return rng.choice(HAND_VALUES)
    if kind == 4:
        return rng.randint(-5, 5) * 10 ** rng.randint(0, 40)
    if kind in (5, 6):
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {_random_text(rng)[:8]: _random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def long_strings(quick: bool) -> list[str]:
    sizes = (10_000, 100_000) if quick else (10_000, 100_000, 1_000_000, 4_000_000)
    return ["7" * s for s in sizes] + ["é" * (sizes[-1] // 2)]


def fuzz_values(kind: str, count: int, seed: int, options=(), quick: bool = False) -> list[Fuzz]:
    """At least ``count`` values for a widget of ``kind``: "number" (a text box holding a
    number), "text", "choice" (a dropdown or radio of ``options``), "bool" (a one-box
    checklist), "list" (a checklist of ``options``) or "store" (data the server put in the
    page). Fixed catalogues first (edge cases), then seeded random ones."""
    rng = random.Random(f"{kind}-{seed}")
    out: list[Fuzz] = [Fuzz(v, False, "hand-crafted JSON") for v in HAND_VALUES]
    if kind in ("number", "text"):
        out += [Fuzz(None, True, "cleared")]
        out += [Fuzz(t, True, "number text") for t in NUMBER_TEXTS]
        out += [Fuzz(t, True, "text") for t in TEXTS]
        out += [Fuzz(s, True, "very long text") for s in long_strings(quick)]
    elif kind == "choice":
        out += [Fuzz(v, True, "an option") for v in options]
        out += [Fuzz(t, False, "not an option") for t in TEXTS + NUMBER_TEXTS]
    elif kind == "bool":
        out += [Fuzz([True], True, "checked"), Fuzz([], True, "unchecked")]
        out += [Fuzz(t, False, "text") for t in TEXTS]
    elif kind == "list":
        opts = list(options)
        for r in range(len(opts) + 1):
            out += [Fuzz(sorted(rng.sample(opts, r)), True, "checked options") for _ in range(3)]
        out += [Fuzz(t, False, "text") for t in TEXTS]
    else:  # a Store the server fills: any other value is hand-crafted
        out += [Fuzz(t, False, "text") for t in TEXTS + NUMBER_TEXTS]
    i = 0
    while len(out) < count:
        i += 1
        if kind in ("number", "text") and i % 3:
            value = _random_number_text(rng) if kind == "number" or i % 2 else _random_text(rng)
            out.append(Fuzz(value, True, "random text"))
        elif kind == "choice" and options and i % 4 == 0:
            out.append(Fuzz(rng.choice(list(options)), True, "an option"))
        elif kind == "list" and options and i % 4 == 0:
            k = rng.randint(0, len(options))
            out.append(Fuzz(sorted(rng.sample(list(options), k)), True, "checked options"))
        else:
            out.append(Fuzz(_random_json(rng), False, "random JSON"))
    return out


PDB_LINES = (
    "ATOM      1  N   ALA A   1      11.104   6.134  -6.504  1.00  0.00           N\n"
    "ATOM      2  CA  ALA A   1      11.639   6.071  -5.147  1.00  0.00           C\n"
    "ATOM      3  C   ALA A   1      13.149   5.889  -5.141  1.00  0.00           C\n"
    "ATOM      4  O   ALA A   1      13.764   6.398  -6.079  1.00  0.00           O\n"
)
FILE_NAMES = ("x.pdb", "../../etc/passwd", "a" * 300 + ".pdb", "😀.pdb", "", "C:\\x\\y.pdb",
              "\x00.pdb", "structure.cif", ".pdb", "con.pdb")  # fmt: skip


def upload_values(count: int, seed: int, cap: int = 2_000_000) -> list[tuple[Fuzz, object]]:
    """[(contents, file name)] for the upload widget: data URLs of files a browser can read
    (empty, random bytes, a small PDB, one with NaN coordinates, one cut mid-line, one over
    the ``cap``) with any file name, then hand-crafted contents (not a data URL, bad base64,
    not a string)."""
    import base64

    rng = random.Random(f"upload-{seed}")

    def url(data: bytes, mime: str = "application/octet-stream") -> str:
        return f"data:{mime};base64,{base64.b64encode(data).decode()}"

    files = [
        b"",
        PDB_LINES.encode(),
        PDB_LINES.replace("11.104", "   nan").encode(),
        PDB_LINES[:100].encode(),
        b"hello, not a structure\n",
        rng.randbytes(cap + 1000),
        (PDB_LINES * (cap // len(PDB_LINES) + 10)).encode(),
    ]
    out = [(Fuzz(url(f), True, "a file"), rng.choice(FILE_NAMES)) for f in files]
    hand = ["abc", "data:,", "data:;base64,!!!", "data:text/plain;base64,QQ", ",", "base64,"]
    out += [(Fuzz(h, False, "not a data URL"), "x.pdb") for h in hand]
    out += [(Fuzz(v, False, "hand-crafted JSON"), "x.pdb") for v in HAND_VALUES]
    out += [(Fuzz(url(PDB_LINES.encode()), False, "name not a string"), v) for v in HAND_VALUES]
    while len(out) < count:
        if len(out) % 3:
            data = rng.randbytes(rng.randint(0, 4000))
            if rng.random() < 0.5:
                data = PDB_LINES.encode() + data
            out.append((Fuzz(url(data, rng.choice(("", "chemical/x-pdb"))), True, "a file"),
                        rng.choice(FILE_NAMES)))  # fmt: skip
        else:
            out.append((Fuzz(_random_json(rng), False, "random JSON"), rng.choice(FILE_NAMES)))
    return out


def number_expected_invalid(value, lo: float, hi: float, optional: bool) -> bool | None:
    """True when a number box holding ``value`` must get a message (not a finite number in
    [lo, hi]); None when it is not clear-cut (blank and optional, a bound itself)."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip() if isinstance(value, (str, int, float)) else None
    if text is None:
        return None
    if text == "":
        return None if optional else True
    try:
        x = float(text)
    except ValueError:
        return True
    if not math.isfinite(x) or x < lo or x > hi:
        return True
    return None


# ---- HTTP and the page model ------------------------------------------------------------------
class Stats:
    """Requests and errors of one phase, by kind (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = collections.Counter()  # label -> count
        self.status = collections.Counter()  # "200", "204", "500", "conn" ...
        self.errors_5xx = collections.Counter()  # "label | cause" -> count
        self.conn_errors = 0
        self.bytes_max, self.bytes_max_label = 0, ""
        self.latency = []

    def add(self, label: str, status, cause: str = "", seconds: float = 0.0, size: int = 0):
        with self.lock:
            self.requests[label] += 1
            self.status[str(status)] += 1
            if size > self.bytes_max:
                self.bytes_max, self.bytes_max_label = size, label
            if len(self.latency) < 200_000:
                self.latency.append(seconds)
            if status == "conn":
                self.conn_errors += 1
            elif isinstance(status, int) and status >= 500:
                key = f"{label} | {cause}" if cause else label
                self.errors_5xx[key] += 1

    def summary(self) -> dict:
        lat = sorted(self.latency)
        return {
            "requests": sum(self.requests.values()),
            "by_endpoint": dict(self.requests),
            "http_status": dict(self.status),
            "http_5xx": sum(v for k, v in self.status.items() if k.startswith("5")),
            "http_5xx_by_cause": dict(self.errors_5xx.most_common(60)),
            "connection_errors": self.conn_errors,
            "largest_response_bytes": self.bytes_max,
            "largest_response_from": self.bytes_max_label,
            "latency_ms_median": round(1000 * lat[len(lat) // 2], 1) if lat else None,
            "latency_ms_p99": round(1000 * lat[int(len(lat) * 0.99)], 1) if lat else None,
        }


class Http:
    """One keep-alive connection per thread to the server."""

    def __init__(self, port: int, stats: Stats):
        self.port, self.stats = port, stats
        self.local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(HOST, self.port, timeout=120)
        return conn

    def request(self, method, path, body=None, headers=None, label="", cause=""):
        """(status, body bytes); status "conn" when the server could not be reached."""
        data = None if body is None else json.dumps(body).encode("utf-8", "surrogatepass")
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        t0 = time.perf_counter()
        for attempt in (0, 1):
            try:
                conn = self._conn()
                conn.request(method, path, body=data, headers=hdrs)
                resp = conn.getresponse()
                payload = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    self.local.conn = None
                status = resp.status
                break
            except (OSError, http.client.HTTPException):
                self._close()
                if attempt:
                    self.stats.add(label or path, "conn", cause, time.perf_counter() - t0)
                    return "conn", b""
        self.stats.add(label or path, status, cause, time.perf_counter() - t0, len(payload))
        return status, payload

    def _close(self):
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            conn.close()
        self.local.conn = None


class Page:
    """What dash-renderer keeps of one open page: its components' properties and the
    server-side callbacks (from /_dash-dependencies) that a change of property fires."""

    def __init__(self, http_: Http, deps: list, layout: dict):
        self.http = http_
        self.deps = [d for d in deps if not d.get("clientside_function")]
        for d in self.deps:
            d["_outputs"] = parse_outputs(d["output"])
            d["_inputs"] = [(spec_id(i["id"]), i["property"]) for i in d["inputs"]]
            d["_state"] = [(spec_id(s["id"]), s["property"]) for s in d.get("state", [])]
            d["_name"] = callback_name(d["_outputs"])
        self.comps: dict[str, dict] = {}  # id key -> {"id", "props", "owner"}
        self.notes: dict[str, str] = {}  # the runs list's status cells (``list_runs``)
        self.refusals: list[str] = []  # bodies of HTTP 400 answers (the request guard)
        self._register(layout, owner=None)

    @classmethod
    def open(cls, http_: Http, deps: list | None = None) -> Page:
        http_.request("GET", "/", label="GET /")
        status, body = http_.request("GET", "/_dash-layout", label="GET /_dash-layout")
        if status != 200:
            raise RuntimeError(f"/_dash-layout answered {status}")
        if deps is None:
            status, raw = http_.request("GET", "/_dash-dependencies", label="GET deps")
            deps = json.loads(raw)
        return cls(http_, json.loads(json.dumps(deps)), json.loads(body))

    # ---- the component store ----
    def _register(self, tree, owner) -> None:
        for cid, props in components(tree):
            self.comps[id_key(cid)] = {"id": cid, "props": dict(props), "owner": owner}

    def get(self, cid, prop, default=None):
        comp = self.comps.get(id_key(cid))
        return default if comp is None else comp["props"].get(prop, default)

    def set(self, cid, prop, value) -> None:
        key = id_key(cid)
        comp = self.comps.setdefault(key, {"id": cid, "props": {}, "owner": None})
        if prop == "children":  # its old children leave the page
            gone = [k for k, c in self.comps.items() if c["owner"] == (key, prop)]
            for k in gone:
                del self.comps[k]
            self._register(value, owner=(key, prop))
        comp["props"][prop] = value

    @property
    def session(self) -> str:
        return self.get("wb-session", "data")

    def matching(self, pattern) -> list[dict]:
        return [c for c in self.comps.values() if matches(pattern, c["id"])]

    # ---- callbacks ----
    def _values(self, specs) -> list:
        """Inputs or states as the renderer sends them (a list per pattern id)."""
        out = []
        for cid, prop in specs:
            if is_pattern(cid):
                out.append(
                    [
                        {"id": c["id"], "property": prop, "value": c["props"].get(prop)}
                        for c in self.matching(cid)
                    ]
                )
            else:
                out.append({"id": cid, "property": prop, "value": self.get(cid, prop)})
        return out

    def fire(self, cid, prop, value, only: str | None = None, cascade: int = 2, cause: str = ""):
        """Set a property as the user or a timer would and send every server callback that
        has it as an input (``only``: those whose output names contain it); the results are
        applied and, up to ``cascade`` levels, fire the callbacks they feed. Returns
        [(callback name, HTTP status)]."""
        self.set(cid, prop, value)
        return self._fire_inputs([(cid, prop)], only, cascade, cause)

    def _fire_inputs(self, changed, only, cascade, cause):
        results = []
        for dep in self.deps:
            if only and only not in dep["output"]:
                continue
            hit = [
                (c, p)
                for c, p in changed
                if any(matches(ic, c) and ip == p for ic, ip in dep["_inputs"])
            ]
            if hit:
                results += self.call(dep, hit, cascade, cause)
        return results

    def call(self, dep, changed, cascade=0, cause=""):
        outputs = []
        for cid, prop in dep["_outputs"]:
            if is_pattern(cid):
                outputs.append([{"id": c["id"], "property": prop} for c in self.matching(cid)])
            else:
                outputs.append({"id": cid, "property": prop})
        body = {
            "output": dep["output"],
            "outputs": outputs if len(outputs) > 1 else outputs[0],
            "inputs": self._values(dep["_inputs"]),
            "state": self._values(dep["_state"]),
            "changedPropIds": [f"{id_key(c)}.{p}" for c, p in changed],
        }
        status, raw = self.http.request(
            "POST", "/_dash-update-component", body, label=dep["_name"], cause=cause
        )
        results = [(dep["_name"], status)]
        if status in (400, 413):
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            self.refusals.append(text[:300])
        if status != 200:
            return results
        try:
            response = json.loads(raw).get("response", {})
        except ValueError:
            return results
        updated = []
        for key, props in response.items():
            cid = spec_id(key)
            for prop, value in props.items():
                self.set(cid, prop, value)
                updated.append((cid, prop))
        if cascade and updated:
            results += self._fire_inputs(updated, None, cascade - 1, cause)
        return results


# ---- the ledger of runs --------------------------------------------------------------------------
class Ledger:
    """Every run started: its owner and the statuses it may honestly be listed with."""

    def __init__(self):
        self.runs: dict[str, dict] = {}
        self.lock = threading.Lock()

    def add(self, run_id: str, owner: str, phase: str, expect=None):
        with self.lock:
            self.runs[run_id] = {"owner": owner, "phase": phase, "expect": expect, "seen": None}

    def owners(self) -> set[str]:
        return {r["owner"] for r in self.runs.values()}


# what the Run message starts with when the runs were accepted (live.py: all with a worker,
# or some waiting in the queue)
STARTED = ("Started", "Queued")


def list_runs(page: Page, cause="list") -> dict[str, str]:
    """{run_id: status} of the session's runs list (the refresh callback, as its timer fires);
    the text of each status cell (a damaged run's reason under it) is kept in
    ``page.notes``."""
    tick = (page.get("wb-runs-tick", "n_intervals") or 0) + 1
    page.set("wb-runs-digest", "data", None)  # always re-render: we read the table
    page.fire("wb-runs-tick", "n_intervals", tick, only="wb-runs-table", cascade=0, cause=cause)
    table = page.get("wb-runs-table", "children")
    page.notes = status_notes(table)
    return dict(runs_in_table(table))


def status_notes(tree) -> dict[str, str]:
    """{run_id: the text of its status cell} of the rendered runs list."""
    out = {}
    for row in _find(tree, "Tr"):
        note, run_id = "", None
        for comp in _walk(row):
            props = comp.get("props", {})
            if comp.get("type") == "Td" and (props.get("className") or "").startswith("wb-st-"):
                note = text_of(comp)
            cid = props.get("id")
            if isinstance(cid, dict) and cid.get("type") == "run-open":
                run_id = cid.get("index")
        if run_id:
            out[run_id] = note
    return out


def open_and_export(page: Page, run_id: str, cause: str) -> dict:
    """Open a run by id (the id box and Open) and click every export button the replay
    shows; what was offered and what came back."""
    page.set("wb-open-id", "value", run_id)
    n = (page.get("wb-open-btn", "n_clicks") or 0) + 1
    page.fire("wb-open-btn", "n_clicks", n, cascade=3, cause=cause)
    title = text_of(page.get("wb-replay-title", "children"))
    msg = text_of(page.get("wb-open-msg", "children"))
    offered = [
        c["id"]["fmt"]
        for c in page.matching({"type": "run-export", "index": run_id, "fmt": ["ALL"]})
    ]
    exports = {}
    for fmt in sorted(set(offered)):
        bid = {"type": "run-export", "index": run_id, "fmt": fmt}
        page.set("wb-download", "data", None)
        res = page.fire(
            bid,
            "n_clicks",
            (page.get(bid, "n_clicks") or 0) + 1,
            cascade=0,
            cause=f"{cause} export {fmt}",
        )
        data = page.get("wb-download", "data")
        exports[fmt] = {
            "http": [s for _, s in res],
            "bytes": len((data or {}).get("content") or ""),
            "file": (data or {}).get("filename"),
        }
    return {"title": title, "message": msg, "exports": exports}


# ---- phase 1: load -------------------------------------------------------------------------------
def form_fields(page: Page, values: dict) -> None:
    for name, value in values.items():
        page.set({"name": name, "type": "field"}, "value", value)


DIVERGE = {"gd.optimizer": "sgd", "gd.learning_rate": "10", "optim.clip": "none"}


def load_plan(sessions: int, clicks: int, quick: bool) -> list[list[dict]]:
    """Per session, its Run clicks: two methods side by side, lj-loop n in 60-100; the
    second session's first click runs GD with settings that diverge (SGD, lr 10, no clip)
    beside FIRE, so the frame stream and the exports meet non-finite positions."""
    pairs = (("gd", "gnn"), ("gd", "cg"), ("fire", "gd"), ("cg", "gnn"))
    sizes = (60, 100) if not quick else (60,)
    steps = 100 if quick else 300
    plan = []
    for s in range(sessions):
        plan.append(
            [
                {
                    "methods": list(pairs[(s + c) % len(pairs)]),
                    "n": sizes[(s + c) % len(sizes)],
                    "steps": steps,
                    "seed": s,
                    "fields": {},
                }
                for c in range(clicks)
            ]
        )
    if sessions > 1:
        plan[1][0].update(methods=["gd", "fire"], fields=dict(DIVERGE))
    return plan


def run_session(
    http_: Http, deps, clicks: list[dict], ledger: Ledger, phase: str, frame_s: float, out: list
):
    """One browser tab: load the page, click Run for each planned group, poll until it
    ends (with the frame stream), list, open and export every run."""
    page = Page.open(http_, deps)
    sid = page.session
    record = {"session": sid[:6], "groups": [], "problems": [], "nonfinite_frames": 0}
    start = {c["id"]["name"]: c["props"].get("value")
             for c in page.matching({"type": "field", "name": ["ALL"]})}  # fmt: skip
    for i, click in enumerate(clicks):
        form_fields(page, start)
        form_fields(
            page,
            {
                "system.kind": "lj-loop",
                "system.n": str(click["n"]),
                "schedule.max_steps": str(click["steps"]),
                "seed": str(click["seed"]),
                **click["fields"],
            },
        )
        page.fire("wb-methods", "value", click["methods"], cause=f"{phase} form")
        page.fire("wb-run", "n_clicks", i + 1, cause=f"{phase} run")
        msg = text_of(page.get("wb-run-msg", "children"))
        live = page.get("wb-live", "data") or {}
        if not msg.startswith(STARTED):
            record["problems"].append(f"Run not started: {msg[:120]}")
            continue
        run_ids = [r["id"] for r in live.get("runs", [])]
        for rid in run_ids:
            ledger.add(rid, sid, phase)
        t0, tick, last_list, last_poll = time.monotonic(), 0, 0.0, 0.0
        since = dict.fromkeys(run_ids, 0)
        while time.monotonic() - t0 < 300:
            seen = page.get("wb-seen", "data") or {}
            if not seen.get("_active", True) and tick:
                break
            q = ",".join(f"{r}:{since[r]}" for r in run_ids)
            status, raw = http_.request(
                "GET",
                f"/_wb/frames?runs={q}",
                headers={"X-WB-Session": sid},
                label="GET /_wb/frames",
                cause=phase,
            )
            if status == 200:
                try:
                    for rid, entry in strict_json(raw).items():
                        since[rid] = entry.get("frame", since[rid])
                        record["nonfinite_frames"] += bool(entry.get("nonfinite"))
                except ValueError as err:
                    record["problems"].append(f"a /_wb/frames reply is not JSON: {err}")
            now = time.monotonic()
            if now - last_list >= 2.0:  # the runs list's Interval
                last_list = now
                page.fire("wb-runs-tick", "n_intervals", tick, cascade=0, cause=phase)
            if now - last_poll >= POLL_S:  # the poll chain (workbench.js)
                last_poll = now
                tick += 1
                page.fire("wb-poll", "data", tick, cascade=1, cause=f"{phase} poll")
            time.sleep(frame_s)  # the frame stream's period
        statuses = {
            rid: text_of(page.get({"type": "run-status", "index": rid}, "children"))
            for rid in run_ids
        }
        record["groups"].append(
            {
                "methods": click["methods"],
                "n": click["n"],
                "diverging settings": bool(click["fields"]),
                "seconds": round(time.monotonic() - t0, 1),
                "status_lines": {r[:6]: s[:80] for r, s in statuses.items()},
            }
        )
    listed = list_runs(page, cause=phase)
    with ledger.lock:
        mine = [(rid, info) for rid, info in ledger.runs.items() if info["owner"] == sid]
    for rid, info in mine:
        if info["owner"] == sid and info["phase"] == phase:
            info["seen"] = listed.get(rid)
            if rid not in listed:
                record["problems"].append(f"run {rid[:6]} not in its session's list")
            opened = open_and_export(page, rid, cause=f"{phase} open")
            info["opened"] = opened
            bad = {f: e for f, e in opened["exports"].items() if e["bytes"] == 0}
            if bad or not opened["exports"]:
                record["problems"].append(f"run {rid[:6]} ({listed.get(rid)}): exports {bad}")
    out.append(record)


def load_round(server: Server, plan, ledger: Ledger, phase: str, frame_s: float) -> dict:
    stats = Stats()
    http_ = Http(server.port, stats)
    deps = json.loads(http_.request("GET", "/_dash-dependencies", label="GET deps")[1])
    out: list = []
    errors: list = []

    def worker(clicks):
        try:
            run_session(Http(server.port, stats), deps, clicks, ledger, phase, frame_s, out)
        except Exception as err:  # one session's failure is a result, not the end
            errors.append(f"{type(err).__name__}: {err}")

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(c,)) for c in plan]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = collections.Counter(r["seen"] for r in ledger.runs.values() if r["phase"] == phase)
    return {
        "seconds": round(time.monotonic() - t0, 1),
        "sessions": len(plan),
        "run_clicks": sum(len(c) for c in plan),
        "runs": sum(1 for r in ledger.runs.values() if r["phase"] == phase),
        "final_status": dict(statuses),
        "session_errors": errors,
        "problems": [p for rec in out for p in rec["problems"]],
        "frame_replies_flagged_nonfinite": sum(rec["nonfinite_frames"] for rec in out),
        "groups": [g for rec in out for g in rec["groups"]],
        **stats.summary(),
    }


# ---- phase 2: fuzz -------------------------------------------------------------------------------
OPTION = object()  # stands for "one of the target widget's own options" in fuzz_values


def field_kinds(page: Page) -> dict[str, str]:
    """{form key: fuzz kind} of every form field on the page: "number", "text", "choice",
    "bool" (the schema's kind; the protein widgets outside the schema by their widget)."""
    from workbench import forms

    out = {}
    for comp in page.matching({"type": "field", "name": ["ALL"]}):
        name = comp["id"]["name"]
        f = forms.FIELD_BY_NAME.get(name)
        if f is not None:
            out[name] = "number" if f.kind in ("int", "float") else f.kind
        else:
            out[name] = "choice" if "options" in comp["props"] else "text"
    return out


def fuzz_cases(page: Page, kind: str, count: int, seed: int, quick: bool) -> list:
    """[(form key, Fuzz)] for the fields of ``kind``: the values of ``fuzz_values`` dealt
    round the fields, a widget's own options where an option is meant, and each number
    field's bounds and the values just outside them."""
    from workbench import forms

    targets = sorted(n for n, k in field_kinds(page).items() if k == kind)
    rng = random.Random(f"cases-{kind}-{seed}")
    cases = []
    for i, fz in enumerate(fuzz_values(kind, count, seed, options=(OPTION,), quick=quick)):
        name = targets[i % len(targets)]
        if fz.value is OPTION:
            opts = page.get({"type": "field", "name": name}, "options") or [{"value": None}]
            fz = Fuzz(rng.choice(opts)["value"], True, "an option")
        cases.append((name, fz))
    for name in targets:  # every option of every choice, both states of every checkbox
        if kind == "choice":
            opts = page.get({"type": "field", "name": name}, "options") or []
            cases += [(name, Fuzz(o["value"], True, "an option")) for o in opts]
        elif kind == "bool":
            cases += [(name, Fuzz([True], True, "checked")), (name, Fuzz([], True, "unchecked"))]
    if kind == "number":
        for name in targets:
            f = forms.FIELD_BY_NAME[name]
            for v in (f.lo, f.hi, f.lo - 1, f.hi + 1, f.hi * 10, -f.hi - 1):
                cases.append(
                    (name, Fuzz(repr(v) if isinstance(v, float) else str(v), True, "bound"))
                )
    return cases


OTHER_WIDGETS = {
    # label: (id, property, fuzz kind, options, callbacks fired after setting it)
    "methods": ("wb-methods", "value", "list", "FORM_METHODS", ()),
    "tab": ("wb-system-tabs", "value", "choice", ("loop", "protein"), ()),
    "protein source": (
        "wb-protein-source",
        "value",
        "choice",
        ("file", "upload", "pdbid", "sequence"),
        (),
    ),
    "upload token": ("wb-upload-token", "data", "store", (), ()),
    "session": (
        "wb-session",
        "data",
        "store",
        (),
        (("wb-runs-tick", "n_intervals"), ("wb-stop-all", "n_clicks"), ("wb-open-btn", "n_clicks")),
    ),
    "threshold": ("wb-thresh-value", "value", "text", (), ()),
    "open run id": ("wb-open-id", "value", "text", (), (("wb-open-btn", "n_clicks"),)),
    "replay slider": ("wb-replay-slider", "value", "store", (), ()),
    "preset": ("wb-preset", "value", "choice", "PRESETS", ()),
}


def _bad(results) -> bool:
    return any(not isinstance(s, int) or s >= 500 for _, s in results)


class FuzzErrors:
    """The fuzz values that got an HTTP 5xx, grouped by (widget, callback, browser-sendable)
    with a count and the first few values (thread-safe)."""

    def __init__(self):
        self.groups: dict[tuple, dict] = {}
        self.lock = threading.Lock()

    def add(self, target: str, results, fz: Fuzz) -> None:
        for name, status in results:
            if isinstance(status, int) and status < 500:
                continue
            with self.lock:
                g = self.groups.setdefault((target, name, fz.browser), {"count": 0, "examples": []})
                g["count"] += 1
                if len(g["examples"]) < 4:
                    g["examples"].append(fz.short())

    def report(self) -> list[dict]:
        rows = [
            {"widget": t, "callback": c, "browser_sendable": b, **g}
            for (t, c, b), g in self.groups.items()
        ]
        return sorted(rows, key=lambda r: (not r["browser_sendable"], -r["count"]))


class FuzzSession:
    """One page sending fuzz values; several run at once (``fuzz_phase``), sharing the
    report under a lock."""

    def __init__(self, http_: Http, shared: dict, lock: threading.Lock, errors: FuzzErrors):
        self.page = page = Page.open(http_)
        self.sid = page.session
        self.shared, self.lock, self.errors = shared, lock, errors
        form_fields(page, {"system.kind": "lj-loop", "system.n": "60", "schedule.max_steps": "40"})
        self.defaults = {
            c["id"]["name"]: c["props"].get("value")
            for c in page.matching({"type": "field", "name": ["ALL"]})
        }
        self.msgs = page.matching({"type": "field-msg", "name": ["ALL"]})

    def reset(self, methods, tab, source="file") -> None:
        page = self.page
        for name, v in self.defaults.items():
            page.set({"type": "field", "name": name}, "value", v)
        for m in self.msgs:
            m["props"]["children"] = None
        page.set("wb-methods", "value", methods)
        page.set("wb-system-tabs", "value", tab)
        page.set("wb-protein-source", "value", source)
        page.set("wb-session", "data", self.sid)
        page.set("wb-replay", "data", None)

    def _note(self, key: str, text: str) -> None:
        with self.lock:
            if len(self.shared[key]) < 30:
                self.shared[key].append(text)

    def field(self, name: str, fz: Fuzz, starts: int) -> collections.Counter:
        """Set form field ``name`` to the value (validation, risks, summary), check the
        message next to it, then click Run when validation refused the form (or, up to
        ``starts`` times in all, when it accepted it: real runs, stopped at once)."""
        from workbench import forms

        page, counts = self.page, collections.Counter()
        f = forms.FIELD_BY_NAME.get(name)
        protein = name.startswith("protein.") or (f is not None and f.group == "protein")
        methods = list(f.methods) if f is not None and f.methods else ["gd", "cg"]
        source = {"protein.pdb_id": "pdbid", "protein.sequence": "sequence"}.get(name, "file")
        self.reset(methods, "protein" if protein else "loop", source)
        cause = f"fuzz {name}={fz.short()}"
        page.refusals.clear()
        res = page.fire({"type": "field", "name": name}, "value", fz.value, cascade=0, cause=cause)
        # refused by the request guards before any callback: HTTP 400 naming the field, or 413
        # naming the body-size limit (a message in the answer, none next to the field)
        guarded = any(s in (400, 413) for _, s in res) and any(
            name in t or "max_request_bytes" in t for t in page.refusals
        )
        counts["refused_by_guard"] += guarded
        self.errors.add(name, res, fz)
        bad = _bad(res)
        counts["requests"] += len(res)
        counts["browser" if fz.browser else "hand"] += 1
        msg = text_of(page.get({"type": "field-msg", "name": name}, "children"))
        if f is not None and f.kind in ("int", "float") and not bad:
            if number_expected_invalid(fz.value, f.lo, f.hi, f.optional) and not (msg or guarded):
                counts["silently_accepted"] += 1
                self._note("silently_accepted", cause)
        invalid = any(text_of(m["props"].get("children")) for m in self.msgs)
        if not (protein or bad):  # protein runs would build OpenMM systems, fetch PDB ids
            with self.lock:
                send = invalid or self.shared["valid_forms_sent_to_run"] < starts
                self.shared["valid_forms_not_sent_to_run"] += not send
                self.shared["valid_forms_sent_to_run"] += not invalid and send
            if send:
                page.set("wb-run-msg", "children", None)
                n = (page.get("wb-run", "n_clicks") or 0) + 1
                res2 = page.fire("wb-run", "n_clicks", n, only="wb-live-cards", cascade=0,
                                 cause=f"{cause} (Run)")  # fmt: skip
                self.errors.add(name, res2, fz)
                res += res2
                counts["requests"] += len(res2)
                counts["run_clicks"] += 1
                if text_of(page.get("wb-run-msg", "children")).startswith(STARTED):
                    counts["runs_started"] += 1
                    if invalid:
                        self._note("validation_run_disagree", cause)
                    page.fire("wb-stop-all", "n_clicks", n, cascade=0, cause="fuzz stop all")
        counts["5xx_browser" if fz.browser else "5xx_hand"] += _bad(res)
        return counts

    def widget(self, label: str, fz: Fuzz, i: int) -> collections.Counter:
        """Set one of OTHER_WIDGETS to the value, then fire what reads it."""
        cid, prop, _, _, then = OTHER_WIDGETS[label]
        page = self.page
        self.reset(["gd"], "loop")
        page.set("wb-replay", "data", {"id": "0" * 16, "t": 0} if i % 2 else None)
        cause = f"fuzz {label}={fz.short()}"
        res = page.fire(cid, prop, fz.value, cascade=0, cause=cause)
        for tid, tprop in then:
            n = (page.get(tid, tprop) or 0) + 1
            res += page.fire(tid, tprop, n, cascade=1, cause=f"{cause} ({tid})")
        self.errors.add(label, res, fz)
        return self._counted(res, fz)

    def upload(self, fz: Fuzz, filename) -> collections.Counter:
        page = self.page
        page.set("wb-upload", "filename", filename)
        page.set("wb-upload-msg", "children", None)
        cause = f"fuzz upload={fz.short()} name={filename!r:.40}"
        res = page.fire("wb-upload", "contents", fz.value, cascade=0, cause=cause)
        self.errors.add("upload", res, fz)
        counts = self._counted(res, fz)
        counts["accepted"] += "accepted" in text_of(page.get("wb-upload-msg", "children"))
        return counts

    @staticmethod
    def _counted(res, fz: Fuzz) -> collections.Counter:
        return collections.Counter(
            {
                "requests": len(res),
                "browser" if fz.browser else "hand": 1,
                "5xx_browser" if fz.browser else "5xx_hand": int(_bad(res)),
            }
        )


def fuzz_phase(
    server: Server, per_type: int, other: int, starts: int, quick: bool, seed: int, workers=2
):
    """Every fuzz value set into its widget as the page would (which fires form validation,
    the risks and the summary), then a Run click for values validation refused (and for up
    to ``starts`` it accepted). ``workers`` pages send their share of the values at once."""
    from engine.presets import PRESETS
    from workbench import forms

    stats, errors, lock = Stats(), FuzzErrors(), threading.Lock()
    shared = {"silently_accepted": [], "validation_run_disagree": [], "valid_forms_sent_to_run": 0,
              "valid_forms_not_sent_to_run": 0}  # fmt: skip
    sessions = [FuzzSession(Http(server.port, stats), shared, lock, errors) for _ in range(workers)]
    per_type_counts = {}
    t0 = time.monotonic()

    def spread(label: str, jobs: list, work) -> None:
        """Run ``work(session, job)`` for every job, the jobs dealt round the sessions."""
        total = collections.Counter()

        def one(k: int):
            mine = collections.Counter()
            for job in jobs[k::workers]:
                mine.update(work(sessions[k], job))
            with lock:
                total.update(mine)

        threads = [threading.Thread(target=one, args=(k,)) for k in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        per_type_counts[label] = {"values": len(jobs), **total}

    for kind in ("number", "text", "choice", "bool"):
        cases = fuzz_cases(sessions[0].page, kind, per_type, seed, quick)
        spread(kind, cases, lambda fs, job: fs.field(job[0], job[1], starts))
    for label, (_, _, kind, opts, _) in OTHER_WIDGETS.items():
        opts = {"FORM_METHODS": forms.FORM_METHODS, "PRESETS": tuple(PRESETS)}.get(opts, opts)
        values = list(enumerate(fuzz_values(kind, other, seed, options=opts, quick=quick)))
        spread(
            f"widget: {label}", values, lambda fs, job, lab=label: fs.widget(lab, job[1], job[0])
        )
    spread("widget: upload", upload_values(other, seed), lambda fs, job: fs.upload(*job))
    for fs in sessions:
        fs.reset(["gd"], "loop")
        fs.page.fire("wb-stop-all", "n_clicks", 10**6, cascade=0, cause="fuzz stop all")
    report = {
        "seconds": round(time.monotonic() - t0, 1),
        "sessions": workers,
        "per_type": per_type_counts,
        **shared,
        "errors": errors.report(),
        **stats.summary(),
    }
    report.pop("http_5xx_by_cause")  # "errors" groups them
    return report


# ---- phases 3-4: damage, restart, kills ----------------------------------------------------------
DAMAGE_CASES = (
    # (name, file, how, what the listing must say after a restart, before any open: "damaged"
    # naming the file, "rebuilt" (meta.json rebuilt from config.json: its status as before,
    # "meta rebuilt" under it), "unlisted" (no owner can be read) or "unchanged"); the first
    # four are the --quick run's
    ("frames.npz truncated", "frames.npz", "truncate", "damaged"),
    ('meta.json "created": "yesterday"', "meta.json", "created", "rebuilt"),
    ("view.json truncated", "view.json", "truncate", "unchanged"),
    ("meta.json []", "meta.json", "[]", "unlisted"),
    ("metrics.csv truncated", "metrics.csv", "truncate", "damaged"),
    ("frames.npz garbled", "frames.npz", "garble", "damaged"),
    ("metrics.csv garbled", "metrics.csv", "garble", "damaged"),
    ("config.json truncated", "config.json", "truncate", "damaged"),
    ("meta.json truncated", "meta.json", "truncate", "rebuilt"),
    ("meta.json {}", "meta.json", "{}", "unlisted"),
    ("meta.json wrong types", "meta.json", "types", "rebuilt"),
)


def apply_damage(folder: Path, file: str, how: str, seed: int = 0) -> None:
    path = folder / file
    if how == "truncate":
        truncate(path)
    elif how == "garble":
        garble(path, seed)
    elif how in ("[]", "{}"):
        path.write_text(how)
    else:
        meta = json.loads(path.read_text())
        if how == "created":
            meta["created"] = "yesterday"
        else:
            meta.update(status=3, version="x", timings=[])
        path.write_text(json.dumps(meta))


def disk_check(run_dir: Path, run_ids) -> dict:
    """Half-written files: leftover temporary files, and bundle files that do not read."""
    from engine import io as engine_io

    tmp, unreadable = [], []
    for rid in run_ids:
        folder = run_dir / rid
        if not folder.is_dir():
            continue
        tmp += [f"{rid[:6]}/{p.name}" for p in folder.iterdir() if p.name.endswith(".tmp")]
        if engine_io.is_bundle(folder):
            try:
                engine_io.read_bundle(folder)
            except Exception as err:
                unreadable.append(f"{rid[:6]}: {str(err)[:120]}")
    return {"tmp_files": tmp, "unreadable_bundles": unreadable}


def check_all(server: Server, ledger: Ledger, phase: str, open_runs=None) -> dict:
    """Every session's list after a restart, compared with the ledger; every listed run (or
    those in ``open_runs``) opened and exported, then the list read again. A damaged run
    whose files are read only when opened may be listed as before until then: counted apart
    (``damaged_listed_as_before_until_opened``), not as misreported."""
    stats = Stats()
    http_ = Http(server.port, stats)
    page = Page.open(http_)
    lost, misreported, late, opened = [], [], [], {}
    for owner in sorted(ledger.owners()):
        page.set("wb-session", "data", owner)  # the tab's token survives a restart
        listed = list_runs(page, cause=f"{phase} list")
        notes_before = page.notes
        for rid, info in ledger.runs.items():
            if info["owner"] == owner and rid in listed:
                if open_runs is None or rid in open_runs:
                    opened[rid] = open_and_export(page, rid, cause=f"{phase} open")
        after = list_runs(page, cause=f"{phase} list")
        for rid, info in ledger.runs.items():
            if info["owner"] != owner:
                continue
            expect = info["expect"] or (info["seen"],)
            status, before = after.get(rid), listed.get(rid)
            note = notes_before.get(rid, "")
            name = f"{rid[:6]} ({info.get('case') or info['phase']})"
            if before is not None and info.get("expect_note", "") not in note:
                misreported.append(f"{name}: listed {note!r}, not saying {info['expect_note']!r}")
            if status is None and "unlisted" not in expect:
                lost.append(f"{name}, was {info['seen']}")
            elif status is not None and status not in expect:
                if info.get("case") and rid not in opened and status == info["seen"]:
                    late.append(f"{name}: listed {status!r} (not opened in this check)")
                else:
                    misreported.append(
                        f"{name}: listed {status!r}, expected {'/'.join(map(str, expect))}"
                    )
            if info.get("case") and rid in opened and before != status:
                late.append(f"{name}: listed {before!r} until opened, then {status!r}")
            info["listed"] = status
            if info.get("case"):
                o = opened.get(rid) or {}
                info.setdefault("checks", []).append(
                    {
                        "check": phase,
                        "listed_before_open": before,
                        "listed_note": note[:100],
                        "listed_after_open": status,
                        "opened": rid in opened,
                        "replay_title": o.get("title", "")[:80],
                        "open_message": o.get("message", "")[:80],
                        "exports": {
                            f: f"HTTP {'/'.join(map(str, e['http']))}, {e['bytes']:,} B"
                            for f, e in o.get("exports", {}).items()
                        },
                    }
                )
    export_errors = {}
    for rid, o in opened.items():
        bad = [f for f, e in o["exports"].items() if any(s not in (200, 204) for s in e["http"])]
        if bad:
            export_errors[rid[:6]] = bad
    return {
        "runs_in_ledger": len(ledger.runs),
        "runs_lost": lost,
        "runs_misreported": misreported,
        "damaged_listed_as_before_until_opened": late,
        "opened": len(opened),
        "exports_with_errors": export_errors,
        **stats.summary(),
    }


def damage_phase(server_dir: Path, ledger: Ledger, seed: int) -> dict:
    done = [
        rid for rid, r in ledger.runs.items() if r["seen"] == "done" and r["phase"] == "round 1"
    ]
    cases = []
    for (name, file, how, expect), rid in zip(DAMAGE_CASES, done, strict=False):
        apply_damage(server_dir / rid, file, how, seed)
        info = ledger.runs[rid]
        info["case"] = name
        info["expect"] = {
            "damaged": ("damaged",),
            "rebuilt": (info["seen"],),
            "unlisted": ("unlisted",),
            "unchanged": (info["seen"],),
        }[expect]
        info["expect_note"] = {"damaged": file, "rebuilt": "meta rebuilt"}.get(expect, "")
        cases.append({"case": name, "run": rid, "expect": expect})
    return {"cases": cases, "cases_skipped": [c[0] for c in DAMAGE_CASES[len(done) :]]}


def damage_outcomes(cases: list[dict], ledger: Ledger) -> list[dict]:
    """Each damage case with what the first check after the restart saw."""
    out = []
    for c in cases:
        first = (ledger.runs[c["run"]].get("checks") or [{}])[0]
        out.append({**c, "run": c["run"][:6], **first})
    return out


def stored_status(run_dir: Path, run_ids) -> dict:
    """{run id (6 chars): the status in its meta.json} as on disk."""
    out = {}
    for rid in run_ids:
        try:
            out[rid[:6]] = json.loads((run_dir / rid / "meta.json").read_text())["status"]
        except Exception as err:
            out[rid[:6]] = f"unreadable: {err}"
    return out


def kill_phase(server: Server, ledger: Ledger, signum: int, n: int) -> dict:
    """Start four long runs (two run, two queue), wait until both run, then ``signum``."""
    stats = Stats()
    http_ = Http(server.port, stats)
    page = Page.open(http_)
    sid = page.session
    name = signal.Signals(signum).name
    form_fields(
        page,
        {
            "system.kind": "lj-loop",
            "system.n": str(n),
            "schedule.max_steps": "1000000",
            "schedule.stopping": "none",
            "seed": "0",
        },
    )
    page.fire("wb-methods", "value", ["gd", "cg", "gnn", "fire"], cause=f"kill {name}")
    page.fire("wb-run", "n_clicks", 1, cause=f"kill {name} run")
    live = page.get("wb-live", "data") or {}
    run_ids = [r["id"] for r in live.get("runs", [])]
    for rid in run_ids:
        ledger.add(rid, sid, f"kill {name}", expect=HONEST_AFTER_KILL)
    t0, running, tick = time.monotonic(), [], 0
    while time.monotonic() - t0 < 180:
        tick += 1
        page.fire("wb-poll", "data", tick, cascade=0, cause=f"kill {name} poll")
        lines = {
            r: text_of(page.get({"type": "run-status", "index": r}, "children")) for r in run_ids
        }
        running = [r for r, t in lines.items() if re.search(r"running · step [1-9]", t)]
        if len(running) >= 2:
            break
        time.sleep(POLL_S)  # the page's poll period
    before = stored_status(Path(server.run_dir), run_ids)
    exit_info = server.signal(signum)
    meta = stored_status(Path(server.run_dir), run_ids)
    return {
        "signal": name,
        "runs": len(run_ids),
        "running_at_signal": len(running),
        "waited_s": round(time.monotonic() - t0, 1),
        "status_before": before,
        "meta_after_exit": meta,
        **exit_info,
        "disk": disk_check(Path(server.run_dir), run_ids),
        "run_ids": run_ids,
        **{k: v for k, v in stats.summary().items() if k in ("requests", "http_5xx")},
    }


# ---- the whole benchmark -------------------------------------------------------------------------
def load_now() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def server_errors(servers: list[Server]) -> dict:
    """Tracebacks in every server's log: where they were raised, and per server."""
    sites, per_server = collections.Counter(), {}
    for s in servers:
        found = traceback_sites(s.log_text())
        sites.update(found)
        per_server[s.name] = sum(found.values())
    return {
        "tracebacks": sum(sites.values()),
        "per_server": per_server,
        "sites": dict(sites.most_common()),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smallest settings (about 3 minutes)")
    p.add_argument("--sessions", type=int, default=None, help="sessions per load round (4)")
    p.add_argument("--clicks", type=int, default=None, help="Run clicks per session (2)")
    p.add_argument("--fuzz", type=int, default=None, help="values per field type (1000)")
    p.add_argument("--fuzz-other", type=int, default=None, help="values per other widget (150)")
    p.add_argument("--fuzz-starts", type=int, default=None, help="accepted values sent to Run (4)")
    p.add_argument("--frame-ms", type=int, default=100, help="frame-stream period per session")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep the temporary run directory")
    p.add_argument("--no-write", action="store_true", help="do not write results or docs")
    p.add_argument("--note", default="", help="conditions to record (e.g. other jobs running)")
    p.add_argument(
        "--max-minutes", type=float, default=20.0, help="skip the phases left after this long"
    )
    a = p.parse_args(argv)
    q = a.quick
    sessions = a.sessions or (2 if q else 4)
    clicks = a.clicks or (1 if q else 2)
    per_type = a.fuzz or (40 if q else 1000)
    other = a.fuzz_other or (30 if q else 150)
    starts = a.fuzz_starts if a.fuzz_starts is not None else (1 if q else 4)
    kills = (signal.SIGKILL,) if q else (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
    kill_n = 60 if q else 100

    tmp = Path(tempfile.mkdtemp(prefix="wb-reliability-"))
    run_dir = tmp / "runs"
    run_dir.mkdir()
    servers: list[Server] = []
    ledger = Ledger()
    out: dict = {
        "command": "python -m bench.bench_reliability" + (" --quick" if q else ""),
        "settings": {
            "sessions": sessions,
            "run_clicks_per_session": clicks,
            "fuzz_values_per_type": per_type,
            "fuzz_values_per_other_widget": other,
            "fuzz_run_starts": starts,
            "frame_ms": a.frame_ms,
            "workers": 2,
            "kills": [signal.Signals(k).name for k in kills],
        },
        "note": a.note,
        "load_average": {"start": load_now()},
        "phases": {},
        "phases_skipped": [],
    }
    t_start = time.monotonic()

    def in_time(phase: str) -> bool:
        if time.monotonic() - t_start < 60 * a.max_minutes:
            return True
        out["phases_skipped"].append(phase)
        return False

    def new_server(name: str) -> Server:
        s = Server(str(run_dir), str(tmp), name).start()
        servers.append(s)
        out["phases"].setdefault("server_starts_s", {})[name] = s.start_s
        return s

    try:
        # 1. load, two identical rounds, then the fuzz, on one server
        a_srv = new_server("load")
        plan = load_plan(sessions, clicks, q)
        rss = {"start": a_srv.rss_mb()}
        out["phases"]["round 1"] = load_round(a_srv, plan, ledger, "round 1", a.frame_ms / 1000)
        rss["after_round_1"] = a_srv.rss_mb()
        out["load_average"]["after round 1"] = load_now()
        if in_time("round 2"):
            out["phases"]["round 2"] = load_round(a_srv, plan, ledger, "round 2", a.frame_ms / 1000)
            rss["after_round_2"] = a_srv.rss_mb()
            out["load_average"]["after round 2"] = load_now()
        growth, flat = rss_flat(rss["after_round_1"], rss.get("after_round_2"))
        rss.update(round_2_growth=growth, flat_within_10pct=flat)
        if in_time("fuzz"):
            out["phases"]["fuzz"] = fuzz_phase(a_srv, per_type, other, starts, q, a.seed)
            rss["after_fuzz"] = a_srv.rss_mb()
        out["rss_mb"] = rss
        out["load_average"]["after fuzz"] = load_now()
        alive = a_srv.alive()
        out["phases"]["load server"] = {"alive_at_end": alive, **a_srv.stop()}
        # 2. damaged files, restart, every list / open / export
        out["phases"]["damage"] = damage_phase(run_dir, ledger, a.seed)
        b_srv = new_server("damaged")
        out["phases"]["after damage"] = check_all(b_srv, ledger, "after damage")
        out["phases"]["damage"]["cases"] = damage_outcomes(out["phases"]["damage"]["cases"], ledger)
        out["phases"]["after damage"]["alive"] = b_srv.alive()
        out["phases"]["after damage"]["rss_mb"] = b_srv.rss_mb()
        b_srv.stop()
        out["load_average"]["after damage"] = load_now()
        # 3. kills: each server is killed with runs active; the next one checks everything
        kill_results = []
        for signum in kills:
            if not in_time(f"kill {signal.Signals(signum).name}"):
                continue
            k_srv = new_server(f"kill-{signal.Signals(signum).name}")
            res = kill_phase(k_srv, ledger, signum, kill_n)
            kill_results.append(res)
            c_srv = new_server(f"after-{signal.Signals(signum).name}")
            check = check_all(
                c_srv, ledger, f"after {res['signal']}", open_runs=set(res["run_ids"])
            )
            res["after_restart"] = check | {"alive": c_srv.alive()}
            res["listed_after_restart"] = {r[:6]: ledger.runs[r]["listed"] for r in res["run_ids"]}
            res.pop("run_ids")
            c_srv.stop()
        out["phases"]["kills"] = kill_results
        out["load_average"]["end"] = load_now()
    finally:
        for s in servers:
            if s.alive():
                s.proc.kill()
                s.proc.wait()
        out["seconds"] = round(time.monotonic() - t_start, 1)
        out["server_log_errors"] = server_errors(servers)
        out["summary"] = summarize(out, ledger)
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            out["kept"] = str(tmp)
    if not a.no_write:
        write_results(out, quick=q)
    print(json.dumps(out["summary"], indent=1))
    return out


def summarize(out: dict, ledger: Ledger) -> dict:
    ph = out["phases"]
    rounds = [ph.get("round 1", {}), ph.get("round 2", {})]
    fuzz = ph.get("fuzz", {})
    kills = ph.get("kills", [])
    checks = [ph.get("after damage", {})] + [k.get("after_restart", {}) for k in kills]
    every = rounds + [fuzz] + checks + kills
    fuzz_types = fuzz.get("per_type", {})
    return {
        "requests": sum(p.get("requests", 0) for p in every),
        "http_5xx": sum(p.get("http_5xx", 0) for p in every),
        "http_5xx_fuzz_browser_sendable": sum(v.get("5xx_browser", 0) for v in fuzz_types.values()),
        "http_5xx_fuzz_hand_crafted": sum(v.get("5xx_hand", 0) for v in fuzz_types.values()),
        "connection_errors": sum(p.get("connection_errors", 0) for p in every),
        "tracebacks_in_server_logs": out.get("server_log_errors", {}).get("tracebacks"),
        "server_alive_after_load_and_fuzz": ph.get("load server", {}).get("alive_at_end"),
        "largest_response_bytes": fuzz.get("largest_response_bytes"),
        "largest_response_from": fuzz.get("largest_response_from"),
        "runs_started": len(ledger.runs),
        "runs_lost": sum(len(c.get("runs_lost", [])) for c in checks),
        "runs_misreported": sum(len(c.get("runs_misreported", [])) for c in checks),
        "fuzz_invalid_accepted_silently": sum(
            v.get("silently_accepted", 0) for v in fuzz_types.values()
        ),
        "fuzz_refused_by_request_guards": sum(
            v.get("refused_by_guard", 0) for v in fuzz_types.values()
        ),
        "rss_mb": out.get("rss_mb"),
        "exit_s_by_signal": {k["signal"]: k.get("exit_s") for k in kills},
        "damaged_listed_as_before_until_opened": sum(
            len(c.get("damaged_listed_as_before_until_opened", [])) for c in checks[:1]
        ),
        "exports_with_errors": sum(len(c.get("exports_with_errors", {})) for c in checks),
        "half_written_files": sum(
            len(k["disk"]["tmp_files"]) + len(k["disk"]["unreadable_bundles"]) for k in kills
        ),
        "seconds": out.get("seconds"),
        "load_average": out.get("load_average"),
    }


# ---- results -------------------------------------------------------------------------------------
def write_results(out: dict, quick: bool = False) -> None:
    """bench/results/reliability.json and the docs table; a --quick run writes
    reliability_quick.json only."""
    result = RESULT.with_name("reliability_quick.json") if quick else RESULT
    result.parent.mkdir(parents=True, exist_ok=True)
    import platform

    out = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
        **out,
    }
    result.write_text(json.dumps(out, indent=1, default=str) + "\n")
    if not quick and DOC.exists() and "<!-- reliability:start -->" in DOC.read_text():
        replace_block(DOC, "reliability", table(out))


def replace_block(path: Path, name: str, text: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    doc = path.read_text()
    head, rest = doc.split(start, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(f"{head}{start}\n{text.rstrip()}\n{end}{tail}")


def table(out: dict) -> str:
    s, ph = out["summary"], out["phases"]
    rss = s.get("rss_mb") or {}
    la = s.get("load_average") or {}
    rows = [
        ("measured", f"{out['machine']['date']}, `{out['command']}`, {s['seconds']:.0f} s"),
        ("1/5/15-min load average, start → end", f"{la.get('start')} → {la.get('end')}"),
        ("requests sent", f"{s['requests']:,}"),
        ("HTTP 5xx responses (all phases)", s["http_5xx"]),
        (
            "browser-sendable fuzz values answered with HTTP 5xx",
            s["http_5xx_fuzz_browser_sendable"],
        ),
        ("hand-crafted fuzz values answered with HTTP 5xx", s["http_5xx_fuzz_hand_crafted"]),
        ("tracebacks in the server logs", s["tracebacks_in_server_logs"]),
        ("connection errors (server down)", s["connection_errors"]),
        ("server alive after load and fuzz", s["server_alive_after_load_and_fuzz"]),
        (
            "largest response (to one fuzz value)",
            f"{s['largest_response_bytes']:,} bytes, from `{s['largest_response_from']}`",
        ),
        (
            "runs started / lost / misreported",
            f"{s['runs_started']} / {s['runs_lost']} / {s['runs_misreported']}",
        ),
        (
            "damaged runs listed with their old status until opened",
            s["damaged_listed_as_before_until_opened"],
        ),
        ("opened runs whose exports failed (HTTP 5xx)", s["exports_with_errors"]),
        ("invalid numbers accepted without a message", s["fuzz_invalid_accepted_silently"]),
        (
            "fuzz values of form fields refused by the request guards (HTTP 400 naming the "
            "field, 413 naming the size limit; the page shows no message next to the field)",
            s.get("fuzz_refused_by_request_guards"),
        ),
        (
            "server RSS, MB: start / after round 1 / after round 2",
            f"{rss.get('start')} / {rss.get('after_round_1')} / {rss.get('after_round_2')}",
        ),
        (
            "RSS growth over round 2 (flat: ≤ 10 %)",
            "—" if rss.get("round_2_growth") is None else f"{100 * rss['round_2_growth']:+.1f} %",
        ),
        (
            "exit after the signal, s",
            ", ".join(f"{k} {v}" for k, v in s["exit_s_by_signal"].items()),
        ),
        ("half-written files after kills", s["half_written_files"]),
    ]
    lines = ["| quantity | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    fz = ph.get("fuzz", {}).get("per_type", {})
    if fz:
        lines += [
            "",
            "| fuzzed widget type | values (browser / hand-crafted) | requests | "
            "values giving HTTP 5xx (browser / hand-crafted) |",
            "|---|---|---|---|",
        ]
        for kind, c in fz.items():
            lines.append(
                f"| {kind} | {c.get('values')} ({c.get('browser', 0)} / {c.get('hand', 0)}) | "
                f"{c.get('requests', 0)} | {c.get('5xx_browser', 0)} / {c.get('5xx_hand', 0)} |"
            )
    kills = ph.get("kills", [])
    if kills:
        lines += ["", "| signal (2 runs running, 2 queued) | exit after | meta.json on disk "
                  "after exit | listed after restart | half-written files |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for k in kills:
            disk = collections.Counter(k["meta_after_exit"].values())
            listed = collections.Counter(k.get("listed_after_restart", {}).values())
            half = len(k["disk"]["tmp_files"]) + len(k["disk"]["unreadable_bundles"])
            lines.append(
                f"| {k['signal']} | {k['exit_s']} s | "
                f"{', '.join(f'{v}× {s}' for s, v in disk.items())} | "
                f"{', '.join(f'{v}× {s}' for s, v in listed.items())} | {half} |"
            )
    cases = ph.get("damage", {}).get("cases", [])
    if cases:
        lines += ["", "| damage (one finished run each) | listed before opening | opening | "
                  "listed after | exports offered: answer, file size |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for c in cases:
            opening = c.get("replay_title") or c.get("open_message") or "—"
            exports = "; ".join(f"{f}: {h}" for f, h in c.get("exports", {}).items())
            lines.append(
                f"| {c['case']} | {c.get('listed_note') or 'not listed'} | {opening} | "
                f"{c.get('listed_after_open') or 'not listed'} | {exports or 'none'} |"
            )
    sites = out.get("server_log_errors", {}).get("sites", {})
    if sites:
        lines += ["", "| where the server raised (innermost project frame) | tracebacks |",
                  "|---|---|"]  # fmt: skip
        lines += [f"| `{site}` | {n} |" for site, n in sites.items()]
    groups = ph.get("fuzz", {}).get("errors", [])
    if groups:
        lines += ["", "| fuzzed widget | callback answering HTTP 5xx | value origin | values | "
                  "examples |", "|---|---|---|---|---|"]  # fmt: skip
        for g in groups[:40]:
            origin = "browser" if g["browser_sendable"] else "hand-crafted"
            examples = ", ".join(f"`{e.replace('`', chr(39))}`" for e in g["examples"][:3])
            examples = examples.replace("|", "\\|")
            lines.append(
                f"| {g['widget']} | `{g['callback'][:60]}` | {origin} | {g['count']} | {examples} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
