"""How long the upload check takes (issue 10, item 10): ``engine.protein.build.check_structure``,
the run's own builder short of the energy tables (line scan, mdtraj, pdbfixer, OpenMM's
hydrogens, amber14 typing), on heavy-atom PDB files as a user uploads them.

Structures: 2JOF and 2WXC from ../shared/data/pdb (when present, hydrogens stripped), and
proteins of 100 and 300 residues made here: a seeded random sequence on an ideal helix whose
side chains pdbfixer adds (heavy atoms only; a file need not be a folded protein to be
checked). Each file is checked ``--repeat`` times after one warm-up (the force field's XML is
parsed once per process, ~1 s, and reported apart); the median is reported. Bounded: about a
minute on the 2-core machine.

Run:  .venv/bin/python -m bench.bench_upload_check
      (writes bench/results/upload_check.json and the table in docs/benchmarks-uploads.md)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time

import numpy as np

from engine.protein import build
from engine.protein.peptide import ONE_TO_THREE

from .common import DOCS, RESULTS, machine, replace_marked

PATH = RESULTS / "upload_check.json"
DOC = DOCS / "benchmarks-uploads.md"
SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "pdb")


def heavy_pdb(top, x_nm) -> bytes:
    """PDB text of the heavy atoms of an OpenMM topology with positions [n, 3] nm."""
    import openmm.app as app
    import openmm.unit as unit

    modeller = app.Modeller(top, unit.Quantity(np.asarray(x_nm), unit.nanometer))
    modeller.delete([a for a in top.atoms() if a.element is not None and a.element.symbol == "H"])
    out = io.StringIO()
    app.PDBFile.writeFile(modeller.topology, modeller.positions, out)
    return out.getvalue().encode()


def made_protein(n_res: int, seed: int = 0) -> bytes:
    """A heavy-atom PDB of ``n_res`` random residues on an ideal helix (pdbfixer side chains)."""
    rng = np.random.default_rng(seed)
    chains = [[ONE_TO_THREE[c] for c in rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), n_res)]]
    top, pos = build._backbone_topology(chains, build._backbones(chains, "helix", seed))
    top, x, _ = build._complete_and_protonate(top, pos, build._check_forcefield(), [], None, "CPU")
    return heavy_pdb(top, x)


def shared_protein(name: str) -> bytes | None:
    """A shared structure with its hydrogens stripped (as from an X-ray entry), or None."""
    path = os.path.join(SHARED, name)
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as fh:
        traj, _ = build.protein_structure_from_bytes(fh.read())
    top, x = build._omm_from_md(traj)
    return heavy_pdb(top, x)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    t = time.perf_counter()
    build._check_forcefield()
    forcefield_s = time.perf_counter() - t
    files = {
        "2JOF (Trp-cage)": shared_protein("2JOF_native.pdb"),
        "2WXC (BBL)": shared_protein("2WXC_native.pdb"),
        "100 residues (made)": made_protein(100),
        "300 residues (made)": made_protein(300),
    }
    rows = []
    for label, data in files.items():
        if data is None:
            continue
        info = build.check_structure(data)  # warm-up
        times, cpu = [], []
        for _ in range(args.repeat):
            t, c = time.perf_counter(), time.process_time()
            build.check_structure(data)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        rows.append(
            {
                "structure": label,
                "residues": info["n_residues"],
                "heavy_atoms": info["n_heavy"],
                "atoms_with_h": info["n_atoms"],
                "bytes": len(data),
                "check_s_median": statistics.median(times),
                "check_s": times,
                "cpu_s_median": statistics.median(cpu),
            }
        )
        r = rows[-1]
        print(f"{label}: {r['check_s_median']:.2f} s, CPU {r['cpu_s_median']:.2f} s")
    load_after = os.getloadavg()
    loaded = max(load_before[0], load_after[0]) > 1.0
    result = {
        "machine": machine(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "under_load": loaded,
        "forcefield_parse_s": forcefield_s,
        "repeat": args.repeat,
        "rows": rows,
    }
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text(json.dumps(result, indent=1))
    mark = " (measured under load)" if loaded else ""
    lines = [
        f"Upload check times{mark}, median of {args.repeat} after a warm-up, on "
        f"{os.cpu_count()} cores; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; amber14 XML parsed once per process in "
        f"{forcefield_s:.1f} s (not included). CPU time adds the threads of OpenMM's CPU "
        "platform (hydrogen placement), so on an idle machine the wall time lies between "
        "half the CPU time and the CPU time.",
        "",
        "| structure | residues | heavy atoms | atoms with H | wall (s) | CPU (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['structure']} | {r['residues']} | {r['heavy_atoms']:,} | "
            f"{r['atoms_with_h']:,} | {r['check_s_median']:.2f} | {r['cpu_s_median']:.2f} |"
        )
    replace_marked(DOC, "upload-check", "\n".join(lines))


if __name__ == "__main__":
    main()
