"""Protein systems: structure sources, cleaning, force-field preparation and starting positions.

Contract: ``build_protein_system(cfg, seed) -> System`` with ``kind="protein"``, positions in
nm and energies in kJ/mol. Two granularities, chosen by ``cfg.model``:

- "amber-obc2": every atom, hydrogens included, typed by OpenMM's ``amber14-all.xml`` +
  ``implicit/obc2.xml``; ``payload`` holds the OpenMM ``System`` (NoCutoff, no constraints)
  from which engine/protein/energy.py reads the parameters.
- "residue": one bead per residue at its CA (engine/protein/residue_model.py).

Sources (``cfg.pdb``): a file path, a 4-character PDB id (downloaded once into the cache, see
engine/io.py), "villin" (OpenMM's bundled HP35, the default protein, no download), or bytes
passed to ``build_protein_system(..., pdb_bytes=...)`` (uploads). ``cfg.sequence`` alone builds a
peptide on ideal geometry (engine/protein/peptide.py). NMR files give model ``cfg.nmr_model``;
water, ions, ligands and nucleic acids are stripped and said so in ``meta["notes"]``; missing
heavy atoms are rebuilt by pdbfixer (stated); hydrogens are added by OpenMM's Modeller at pH 7.

Starts (``cfg.start``): "native" (the structure itself; for a sequence alone the ideal helix),
"extended" (phi = psi = 180°), "helix" (ideal alpha helix), "random" (a seeded compact random
coil), or a path to a second PDB file of the same residues (e.g. an unfolded frame); atoms are
matched to the native by (chain, residue, atom name). ``reference`` is the native structure for
RMSD, ``None`` for a sequence alone.

Every problem with the input is a ``StructureError`` (a ``ValueError``) with one clear line.
"""

from __future__ import annotations

import contextlib
import functools
import io as _stringio
import os
import random
import re
import threading
import warnings

import numpy as np

from .. import io as engine_io
from ..config import SystemConfig
from ..io import StructureError
from ..types import PROTEIN_UNITS, System
from . import peptide

MODELS = ("amber-obc2", "residue")
FORCEFIELD_FILES = {"amber-obc2": ("amber14-all.xml", "implicit/obc2.xml")}
RELAX_ITERATIONS = 100  # L-BFGS iterations that remove clashes from chains built from sequence
MAX_HEAVY_ATOMS = 5000  # all-pairs energies: ~0.1 s per gradient at this size (platform notes)
AMINO_ACIDS = frozenset(peptide.ONE_TO_THREE.values()) | {
    "HID", "HIE", "HIP", "CYX", "CYM", "ASH", "GLH", "LYN", "ACE", "NME",
}  # fmt: skip  # residue names with an amber14 template
_CAPS = {"ACE", "NME"}
MAX_COORD_NM = 999.0  # PDB's x, y, z fields hold at most 9999.999 Angstrom
_WATER = {"HOH", "WAT", "H2O", "SOL", "TIP3", "TIP", "DOD", "TIP4", "OH2"}

__all__ = ["MAX_HEAVY_ATOMS", "MODELS", "StructureError", "build_protein_system",
           "check_structure", "protein_structure_from_bytes"]  # fmt: skip


# ---- reading and cleaning ------------------------------------------------------------------


def _check_text(data: bytes) -> str:
    """Decode PDB bytes after the cheap checks (empty, binary, no atoms, truncated lines)."""
    if not isinstance(data, (bytes, bytearray)):
        raise StructureError(f"structure data must be bytes, got {type(data).__name__}")
    if not data.strip():
        raise StructureError("the structure file is empty")
    head = data[: 2**16]
    printable = sum(b in (9, 10, 13) or 32 <= b < 127 for b in head)
    if b"\x00" in head or printable < 0.95 * len(head):
        raise StructureError(
            "the structure file is binary, not PDB text (compressed or mmCIF/BinaryCIF files "
            "are not supported; give a .pdb file)"
        )
    text = data.decode("latin-1")
    if is_mmcif(text):
        raise StructureError(
            "mmCIF is not supported, upload PDB: this file is mmCIF/PDBx (a data_ block with "
            "_atom_site items); save it in PDB format (e.g. RCSB's 'PDB Format' download)"
        )
    if not re.search(r"^(ATOM  |HETATM)", text, re.MULTILINE):
        raise StructureError("the file has no ATOM or HETATM records: not a PDB structure")
    return text


def is_mmcif(text: str) -> bool:
    """True for mmCIF/PDBx text: its first non-comment line opens a ``data_`` block, or it has
    ``_atom_site.`` items and no ATOM/HETATM records."""
    for line in text[: 2**16].splitlines():
        if line.strip() and not line.startswith("#"):
            if line.startswith("data_"):
                return True
            break
    return "\n_atom_site." in text[: 2**20] and not re.search(
        r"^(ATOM  |HETATM)", text, re.MULTILINE
    )


_FULL_ATOM_LINE = 78  # an ATOM/HETATM record through its element column (77-78)
_LAST_RECORDS = ("END", "ENDMDL", "TER", "MASTER")  # short records a file may end with


def _scan(text: str) -> tuple[int, int]:
    """(number of models, heavy non-water atoms of model 1) from a line scan; checks records.

    Runs before mdtraj so that enormous or cut files are refused without parsing them. A file
    is truncated when its last line is a record cut short (no newline after it), or when its
    SEQRES records list more residues for a chain than model 1 holds and no END record closes
    the file (missing residues in a complete file are gaps, kept as gaps).
    """
    n_models, heavy, in_first = 0, 0, True
    seqres: dict[str, int] = {}
    present: dict[str, set] = {}
    has_end = False
    lines = text.splitlines()
    cut_last = bool(lines) and not text.endswith(("\n", "\r"))
    for lineno, line in enumerate(lines, 1):
        rec = line[:6]
        if cut_last and lineno == len(lines):
            word = line.strip().split(" ")[0]
            if line.strip() and word not in _LAST_RECORDS and len(line) < _FULL_ATOM_LINE:
                raise StructureError(
                    f"the file ends inside the {rec.strip() or 'last'} record on line {lineno}: "
                    "it is truncated"
                )
        if rec.startswith("MODEL"):
            n_models += 1
        elif rec.startswith("ENDMDL"):
            in_first = False
        elif rec.rstrip() in ("END", "MASTER"):
            has_end = True
        elif rec == "SEQRES":
            try:
                seqres.setdefault(line[11], int(line[13:17]))
            except (ValueError, IndexError):
                pass
        elif rec in ("ATOM  ", "HETATM"):
            try:
                xyz = [float(line[k : k + 8]) for k in (30, 38, 46)]
            except ValueError:
                xyz = []
            if len(line.rstrip()) < 54 or len(xyz) != 3:
                raise StructureError(
                    f"line {lineno} is a truncated or malformed {rec.strip()} record (no readable "
                    "x, y, z): the file is cut or damaged"
                )
            if in_first and line[17:20].strip() not in _WATER:
                element = line[76:78].strip() or line[12:14].strip().lstrip("0123456789")[:1]
                heavy += element.upper() not in ("H", "D")
                if rec == "ATOM  ":
                    present.setdefault(line[21], set()).add(line[22:27])
    if seqres and not has_end:
        short = [(c, len(present.get(c, ())), n) for c, n in seqres.items()
                 if len(present.get(c, ())) < n]  # fmt: skip
        if short:
            c, have, want = short[0]
            raise StructureError(
                f"the file ends after {have} of the {want} residues its SEQRES lists for chain "
                f"{c.strip() or '(blank)'}, with no END record: it is truncated"
            )
    return max(n_models, 1), heavy


def _classify(top) -> tuple[list[int], list[str]]:
    """Atom indices of the protein residues to keep, and the notes on what was stripped."""
    keep, water, ions, nucleic, ligands, nonstandard = [], 0, {}, {}, {}, []
    for res in top.residues:
        names = {a.name for a in res.atoms}
        if res.is_water or res.name in _WATER:
            water += res.n_atoms
        elif res.name in AMINO_ACIDS:
            keep.extend(a.index for a in res.atoms)
        elif res.is_nucleic:
            nucleic[res.name] = nucleic.get(res.name, 0) + 1
        elif res.n_atoms == 1 and res.name not in AMINO_ACIDS:
            ions[res.name] = ions.get(res.name, 0) + 1
        elif {"N", "CA", "C"} <= names:
            nonstandard.append(
                f"{res.name} {res.resSeq} (chain {res.chain.chain_id or res.chain.index})"
            )
        else:
            ligands[res.name] = ligands.get(res.name, 0) + res.n_atoms
    if nonstandard:
        more = f" and {len(nonstandard) - 3} more" if len(nonstandard) > 3 else ""
        raise StructureError(
            f"non-standard residue {', '.join(nonstandard[:3])}{more} has no AMBER ff14SB "
            "template; replace it by its standard residue (e.g. MSE -> MET) or remove it"
        )
    if not keep:
        if nucleic:
            raise StructureError(
                f"the structure has only nucleic acids ({sum(nucleic.values())} DNA/RNA "
                f"residues: {_counts(nucleic)}) and no protein residues; only proteins are "
                "supported"
            )
        found = {}
        for r in top.residues:
            found[r.name] = found.get(r.name, 0) + 1
        what = (
            "the file holds only water"
            if water and not (ions or ligands)
            else ("none of its residues is an amino acid with an amber14 template")
        )
        raise StructureError(
            f"no protein residues found: {what} (residues present: {_counts(found)})"
        )
    notes = []
    if water:
        notes.append(f"stripped {water} water atoms")
    if ions:
        notes.append("stripped ions: " + ", ".join(f"{n} x{c}" for n, c in sorted(ions.items())))
    if ligands:
        notes.append(
            "stripped ligands/heterogens: "
            + ", ".join(f"{n} ({c} atoms)" for n, c in sorted(ligands.items()))
        )
    if nucleic:
        notes.append(f"stripped {sum(nucleic.values())} DNA/RNA residues ({_counts(nucleic)})")
    return keep, notes


def _counts(names: dict) -> str:
    return ", ".join(f"{n} x{c}" for n, c in sorted(names.items())[:6])


def protein_structure_from_bytes(data: bytes, nmr_model: int = 1):
    """Read PDB bytes and keep one model's protein residues.

    Args:
      data: the file's bytes (a path's contents, a download or an upload).
      nmr_model: 1-based model number for multi-model (NMR) files.

    Returns:
      (traj, notes): a one-frame mdtraj.Trajectory (nm) of the protein residues only, and the
      user-facing notes (model taken, what was stripped).

    Raises:
      StructureError: empty, binary, truncated, not a structure, too many heavy atoms, model
        out of range, no protein, only DNA/RNA, or a non-standard residue (named).
    """
    text = _check_text(data)
    n_models, heavy = _scan(text)
    if heavy > MAX_HEAVY_ATOMS:
        raise StructureError(
            f"the structure has about {heavy} heavy atoms (water excluded); the limit is "
            f"{MAX_HEAVY_ATOMS}, since the energy sums over all atom pairs"
        )
    if not 1 <= nmr_model <= n_models:
        raise StructureError(
            f"system.nmr_model is {nmr_model}, but the file has {n_models} model(s)"
        )
    traj = engine_io.parse_pdb_bytes(bytes(data))
    if traj.n_frames != n_models:  # mdtraj and the scan disagree: trust mdtraj's frames
        n_models = traj.n_frames
        if nmr_model > n_models:
            raise StructureError(
                f"system.nmr_model is {nmr_model}, but the file has {n_models} model(s)"
            )
    notes = [f"took NMR model {nmr_model} of {n_models}"] if n_models > 1 else []
    keep, strip_notes = _classify(traj.topology)
    traj = traj[nmr_model - 1].atom_slice(keep)
    n_heavy = sum(a.element.symbol not in ("H", "D") for a in traj.topology.atoms)
    if n_heavy > MAX_HEAVY_ATOMS:
        raise StructureError(
            f"the protein has {n_heavy} heavy atoms; the limit is {MAX_HEAVY_ATOMS}"
        )
    for res in traj.topology.residues:
        names = [a.name for a in res.atoms]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise StructureError(
                f"atom {twice[0]} appears {names.count(twice[0])} times in "
                f"{_atom_label(next(res.atoms)).split(' of ', 1)[1]}: the file is damaged "
                "(alternate locations need an altLoc letter)"
            )
    for problem, bad in (
        ("non-finite (NaN or infinite)", ~np.all(np.isfinite(traj.xyz[0]), axis=1)),
        ("out-of-range (beyond ±1000 nm)", np.any(np.abs(traj.xyz[0]) > MAX_COORD_NM, axis=1)),
    ):
        bad = np.flatnonzero(bad)
        if len(bad):
            named = [_atom_label(traj.topology.atom(int(i))) for i in bad[:4]]
            more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
            raise StructureError(
                f"{len(bad)} atom(s) have {problem} coordinates: {', '.join(named)}{more}"
            )
    return traj, notes + strip_notes


def _atom_label(atom) -> str:
    res = atom.residue
    return f"{atom.name} of {res.name} {res.resSeq} (chain {res.chain.chain_id or res.chain.index})"


def _load_source(cfg: SystemConfig, pdb_bytes: bytes | None):
    """(traj, notes, label) of the native structure named by cfg.pdb or given as bytes."""
    if pdb_bytes is not None:
        label = cfg.pdb or "upload"
        data = pdb_bytes
    else:
        data, label = engine_io.structure_source_bytes(cfg.pdb)
    traj, notes = protein_structure_from_bytes(data, cfg.nmr_model)
    local = _local_pdb(cfg.pdb) if pdb_bytes is None else None
    if local is not None:
        name = os.path.basename(local)  # a name, never the server's path
        notes = [f"PDB id {label}: read from {name} on this machine (no download)", *notes]
    return traj, notes, label


def _local_pdb(source: str | None) -> str | None:
    """The structure file on this machine that a PDB id resolves to (engine/io.py), or None
    (also for sources that are not PDB ids: those never resolve to a PDB id's file)."""
    return engine_io.find_local_pdb((source or "").strip().upper())


def _sequence_of(top) -> str:
    return "".join(peptide.THREE_TO_ONE.get(r.name, "") for r in top.residues)


# ---- OpenMM preparation (all-atom) ---------------------------------------------------------


def _forcefield(model: str):
    import openmm.app as app

    return app.ForceField(*FORCEFIELD_FILES[model])


def _omm_from_md(traj):
    """(openmm Topology, positions [n, 3] nm float64) of a one-frame mdtraj trajectory."""
    return traj.topology.to_openmm(), np.asarray(traj.xyz[0], dtype=np.float64)


def _complete_and_protonate(omm_top, pos, forcefield, notes, variants=None, platform="Reference"):
    """Rebuild missing heavy atoms (pdbfixer), then add hydrogens (OpenMM Modeller, pH 7).

    Args:
      omm_top, pos: openmm Topology and [n, 3] positions (nm).
      variants: per-residue protonation variants to impose (from the native structure), so
        that a second structure of the same protein gets exactly the same atoms.
      platform: OpenMM platform of pdbfixer's and Modeller's small minimizations: Reference
        (deterministic, for builds) or CPU (several times faster, for checks that keep no
        positions).

    Returns:
      (topology, positions [n', 3] nm, variants used).
    """
    import openmm
    import openmm.app as app
    import openmm.unit as unit
    from pdbfixer import PDBFixer

    text = _stringio.StringIO()
    app.PDBFile.writeFile(omm_top, unit.Quantity(pos, unit.nanometer), text, keepIds=True)
    # the Reference platform makes pdbfixer's clash minimization deterministic (the CPU
    # platform's threaded force sums are not), so seeded starts are reproducible
    reference = openmm.Platform.getPlatformByName(platform)
    fixer = PDBFixer(pdbfile=_stringio.StringIO(text.getvalue()), platform=reference)
    fixer.findMissingResidues()
    fixer.missingResidues = {}  # gaps stay gaps: modelling whole loops is beyond a start structure
    fixer.findMissingAtoms()
    had_h = any(a.element is not None and a.element.symbol == "H" for a in omm_top.atoms())
    if fixer.missingAtoms or fixer.missingTerminals:
        n_heavy = sum(len(v) for v in fixer.missingAtoms.values())
        n_term = sum(len(v) for v in fixer.missingTerminals.values())
        where = sorted(
            {f"{r.name}{r.id}" for r in list(fixer.missingAtoms) + list(fixer.missingTerminals)}
        )
        shown = ", ".join(where[:6]) + (" ..." if len(where) > 6 else "")
        notes.append(
            f"pdbfixer added {n_heavy} missing heavy atoms and {n_term} terminal atoms ({shown})"
            + ("; hydrogens were rebuilt" if had_h else "")
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fixer.addMissingAtoms(seed=0)
    modeller = app.Modeller(fixer.topology, fixer.positions)
    n_before = modeller.topology.getNumAtoms()
    try:
        with _seeded_modeller_random(0):
            used = modeller.addHydrogens(forcefield, pH=7.0, variants=variants, platform=reference)
    except ValueError as err:  # no template for a residue: OpenMM's message names it
        raise StructureError(f"cannot add hydrogens: {err}") from None
    n_added = modeller.topology.getNumAtoms() - n_before
    if n_added:
        notes.append(f"added {n_added} hydrogens (OpenMM Modeller, pH 7)")
    xyz = np.asarray(modeller.positions.value_in_unit(unit.nanometer), dtype=np.float64)
    return modeller.topology, xyz, used


# Modeller places new hydrogens at positions drawn from the `random` module it imported, then
# minimizes them. Seeding the process-wide generator was not enough: two builds on two threads
# (a group's runs) interleaved their draws, so the same spec gave different hydrogens, and
# GD from them ended anywhere in -2066..-2020 kJ/mol instead of -2051.8. Each build now draws
# from its own seeded generator, one build at a time.
_MODELLER_RANDOM_LOCK = threading.Lock()


@contextlib.contextmanager
def _seeded_modeller_random(seed: int):
    """Inside: openmm.app.modeller draws from ``random.Random(seed)``, not the global one."""
    from openmm.app import modeller

    with _MODELLER_RANDOM_LOCK:
        shared = modeller.random
        modeller.random = random.Random(seed)
        try:
            yield
        finally:
            modeller.random = shared


def _create_system(forcefield, omm_top):
    import openmm.app as app

    try:
        return forcefield.createSystem(omm_top, nonbondedMethod=app.NoCutoff, constraints=None,
                                       rigidWater=False, removeCMMotion=False)  # fmt: skip
    except ValueError as err:
        # OpenMM's message names the residue without a template, e.g. "No template found for
        # residue 12 (LYS). The set of atoms is similar to LYS, but it is missing 3 atoms."
        raise StructureError(f"the force field cannot type this structure: {err}") from None


def _strip_hydrogens(omm_top, pos):
    import openmm.app as app
    import openmm.unit as unit

    modeller = app.Modeller(omm_top, unit.Quantity(pos, unit.nanometer))
    modeller.delete(
        [a for a in omm_top.atoms() if a.element is not None and a.element.symbol == "H"]
    )
    return modeller.topology, np.asarray(modeller.positions.value_in_unit(unit.nanometer))


def _prepare_allatom(omm_top, pos, forcefield, notes, variants=None, platform="Reference"):
    """Complete, protonate and type a protein; falls back to rebuilding all hydrogens once
    (``platform``: see ``_complete_and_protonate``).

    Returns:
      (openmm System, topology, positions [n, 3] nm, variants).
    """
    for res in omm_top.residues():
        heavy = [a.name for a in res.atoms() if a.element is None or a.element.symbol != "H"]
        if res.name not in _CAPS and (len(heavy) < 3 or "CA" not in heavy):
            raise StructureError(
                f"residue {res.name} {res.id} (chain {res.chain.id}) has {len(heavy)} heavy "
                f"atom(s) ({', '.join(heavy[:4]) or 'none'}); the all-atom model rebuilds "
                "missing atoms only for residues with their CA and at least 3 heavy atoms"
            )
    local = []
    top, xyz, used = _complete_and_protonate(omm_top, pos, forcefield, local, variants, platform)
    try:
        system = _create_system(forcefield, top)
    except StructureError:
        has_h = any(a.element is not None and a.element.symbol == "H" for a in omm_top.atoms())
        if not has_h:
            raise
        # hydrogens named in a convention the templates do not know: drop and re-add them all
        local = ["the file's hydrogens did not match the force field's templates; all were rebuilt"]
        top, xyz, used = _complete_and_protonate(*_strip_hydrogens(omm_top, pos), forcefield,
                                                 local, variants, platform)  # fmt: skip
        system = _create_system(forcefield, top)
    notes.extend(local)
    return system, top, xyz, used


def _atom_keys(omm_top) -> list[tuple[int, int, str]]:
    """(chain index, residue index within chain, atom name) of every atom, in order."""
    keys = []
    for chain in omm_top.chains():
        for r_i, res in enumerate(chain.residues()):
            keys.extend((chain.index, r_i, atom.name) for atom in res.atoms())
    return keys


def _match_atoms(native_top, other_top, other_x: np.ndarray, what: str) -> np.ndarray:
    """Reorder another structure's positions [n, 3] to the native atom order (by name)."""
    nat_res = [r.name for r in native_top.residues()]
    oth_res = [r.name for r in other_top.residues()]
    if nat_res != oth_res:
        diff = next(
            (i for i, (a, b) in enumerate(zip(nat_res, oth_res, strict=False)) if a != b),
            min(len(nat_res), len(oth_res)),
        )
        raise StructureError(
            f"{what} does not have the native's residues: {len(oth_res)} vs {len(nat_res)} "
            "residues, "
            f"first difference at residue {diff + 1}"
        )
    index = {k: i for i, k in enumerate(_atom_keys(other_top))}
    native_keys = _atom_keys(native_top)
    missing = [k for k in native_keys if k not in index]
    if missing or len(index) != len(native_keys):
        c, r, name = (missing or [(0, 0, "?")])[0]
        raise StructureError(
            f"{what} does not have the native's atoms ({len(index)} vs {len(native_keys)}; "
            f"e.g. atom {name} of residue {r + 1} in chain {c})"
        )
    return other_x[[index[k] for k in native_keys]]


# ---- chains built from sequence ------------------------------------------------------------


def _chain_torsions(kind: str, n_res: int, rng: np.random.Generator):
    if kind == "random":
        return peptide.random_coil_torsions(n_res, rng)
    return peptide.CONFORMATIONS[kind]


def _backbones(chains: list[list[str]], kind: str, seed: int) -> list[np.ndarray]:
    """Backbone positions [n_res, 4, 3] (nm) for each chain; chains laid side by side on y."""
    rng = np.random.default_rng(seed)
    out = []
    for c, names in enumerate(chains):
        if kind == "random":
            bb = _compact_coil(names, rng)
        else:
            phi, psi = _chain_torsions(kind, len(names), rng)
            phi = np.where(np.array(names) == "PRO", peptide.PRO_PHI, phi)
            bb = peptide.backbone_positions(len(names), phi, psi)
        out.append(bb + np.array([0.0, 2.0 * c, 0.0]))
    return out


def _compact_coil(names: list[str], rng: np.random.Generator, n_draws: int = 24) -> np.ndarray:
    """The most compact of several clash-free random coils (backbone [n_res, 4, 3], nm)."""
    best, best_rg, n_res = None, np.inf, len(names)
    for _ in range(n_draws):
        phi, psi = peptide.random_coil_torsions(n_res, rng)
        phi = np.where(np.array(names) == "PRO", peptide.PRO_PHI, phi)
        bb = peptide.backbone_positions(n_res, phi, psi)
        flat = bb.reshape(-1, 3)
        res_of = np.repeat(np.arange(n_res), 4)
        d = np.linalg.norm(flat[:, None] - flat[None], axis=-1)
        far = np.abs(res_of[:, None] - res_of[None]) >= 2
        clash = bool(np.any(d[far] < 0.3))
        ca = bb[:, 1]
        rg = float(np.sqrt(np.mean(np.sum((ca - ca.mean(0)) ** 2, axis=1))))
        if not clash and rg < best_rg:
            best, best_rg = bb, rg
    if best is None:  # every draw clashed (long chains): take the last, the energy will sort it out
        best = bb
    return best


# heavy atoms per residue (amber14 templates), for refusing huge sequences before building
_HEAVY_PER_RESIDUE = dict(
    zip(
        "GASCDPNTEVQHMILKRFYW",
        (4, 5, 6, 6, 8, 7, 8, 7, 9, 7, 9, 10, 8, 8, 8, 9, 11, 11, 12, 14),
        strict=True,
    )
)


def _check_sequence_size(seq: str) -> None:
    if len(seq) < 2:
        raise StructureError(
            "system.sequence needs at least 2 residues for the all-atom model (amber14 has no "
            "template for a free amino acid)"
        )
    heavy = sum(_HEAVY_PER_RESIDUE[c] for c in seq) + 1  # + the C-terminal OXT
    if heavy > MAX_HEAVY_ATOMS:
        raise StructureError(
            f"system.sequence of {len(seq)} residues has {heavy} heavy atoms; the limit is "
            f"{MAX_HEAVY_ATOMS} for the all-atom model (the residue model takes up to "
            f"{peptide.MAX_SEQUENCE_LENGTH} residues)"
        )


def _backbone_topology(chains: list[list[str]], backbones: list[np.ndarray]):
    """openmm Topology + positions [n, 3] (nm) holding N, CA, C, O of each residue."""
    import openmm.app as app

    top = app.Topology()
    pos = []
    for c, (names, bb) in enumerate(zip(chains, backbones, strict=True)):
        chain = top.addChain(chr(ord("A") + c % 26))
        for i, name in enumerate(names):
            res = top.addResidue(name, chain, str(i + 1))
            for k, atom in enumerate(("N", "CA", "C", "O")):
                top.addAtom(atom, app.element.Element.getBySymbol(atom[0]), res)
                pos.append(bb[i, k])
    return top, np.asarray(pos)


def _building_names(omm_top) -> list[list[str]]:
    """Per chain, standard residue names to build (variants mapped back, caps refused)."""
    chains = []
    for chain in omm_top.chains():
        names = [r.name for r in chain.residues()]
        caps = [n for n in names if n in _CAPS]
        if caps:
            raise StructureError(
                f"cannot build an extended/helix/random start for a chain with {caps[0]} caps; "
                "use start='native' or a second PDB file"
            )
        chains.append([peptide.ONE_TO_THREE[peptide.THREE_TO_ONE[n]] for n in names])
    return chains


# ---- System assembly -----------------------------------------------------------------------


def _relax(system, x: np.ndarray) -> np.ndarray:
    """Remove clashes from a chain built from sequence: a few L-BFGS iterations (OpenMM).

    Template side chains and hydrogens placed on an ideal backbone can overlap (LJ energies of
    1e5-1e7 kJ/mol), which would make every optimizer's first steps about clashes rather than
    folding. The relaxation runs in vacuum (the GB force removed: 50x cheaper, and clashes are
    a van der Waals matter) on the Reference platform, the only deterministic one, so seeded
    starts are reproducible.

    Args:
      system: the openmm.System of the protein.
      x: [n, 3] positions (nm).

    Returns:
      [n, 3] relaxed positions (nm).
    """
    import copy

    import openmm

    vacuum = copy.deepcopy(system)
    for i in reversed(range(vacuum.getNumForces())):
        if isinstance(vacuum.getForce(i), openmm.CustomGBForce):
            vacuum.removeForce(i)
    platform = openmm.Platform.getPlatformByName("Reference")
    ctx = openmm.Context(vacuum, openmm.VerletIntegrator(0.001), platform)
    ctx.setPositions(x)
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, RELAX_ITERATIONS)
    state = ctx.getState(getPositions=True)
    return np.asarray(state.getPositions(asNumpy=True)._value, dtype=np.float64)


def _md_topology(omm_top):
    import mdtraj

    return mdtraj.Topology.from_openmm(omm_top)


def _bonds(md_top) -> np.ndarray:
    b = np.array([[a.index, c.index] for a, c in md_top.bonds], dtype=np.int64).reshape(-1, 2)
    return np.sort(b, axis=1)


def _start_is_built(start: str) -> bool:
    return start in ("extended", "helix", "random")


def _build_allatom(cfg, seed, pdb_bytes, start_bytes) -> System:
    ff = _forcefield(cfg.model)
    notes: list[str] = []
    if cfg.pdb or pdb_bytes is not None:
        traj, notes, label = _load_source(cfg, pdb_bytes)
        if cfg.sequence:
            seq = peptide.parse_sequence(cfg.sequence)
            if seq != _sequence_of(traj.topology):
                raise StructureError(
                    f"system.sequence {seq} does not match the structure's sequence "
                    f"{_sequence_of(traj.topology)}; give one or the other"
                )
        system, top, native, variants = _prepare_allatom(*_omm_from_md(traj), ff, notes)
        reference = native
    else:
        seq = peptide.parse_sequence(cfg.sequence)
        _check_sequence_size(seq)
        label = f"peptide {seq if len(seq) <= 12 else seq[:10] + '...'}"
        chains = [[peptide.ONE_TO_THREE[c] for c in seq]]
        top0, pos0 = _backbone_topology(chains, _backbones(chains, "helix", seed))
        system, top, native, variants = _prepare_allatom(top0, pos0, ff, notes)
        native = _relax(system, native)
        notes.insert(
            0,
            "built from sequence on ideal geometry; 'native' is the ideal alpha helix "
            f"relaxed by {RELAX_ITERATIONS} L-BFGS iterations in vacuum (OpenMM)",
        )
        reference = None

    start = cfg.start
    if start == "native" or (start == "helix" and reference is None):
        x0 = native
    elif _start_is_built(start):
        chains = _building_names(top)
        top1, pos1 = _backbone_topology(chains, _backbones(chains, start, seed))
        _, top1, x1, _ = _prepare_allatom(top1, pos1, ff, [], variants)
        x0 = _relax(system, _match_atoms(top, top1, x1, f"the {start} chain"))
        notes.append(
            f"start: {start} chain built from the sequence"
            + (f" (seed {seed})" if start == "random" else "")
            + f", clashes relaxed by {RELAX_ITERATIONS} L-BFGS iterations in vacuum (OpenMM)"
        )
    else:
        data = (
            start_bytes if start_bytes is not None else engine_io.structure_source_bytes(start)[0]
        )
        straj, _ = protein_structure_from_bytes(data, 1)
        if straj.n_residues != top.getNumResidues():
            raise StructureError(
                f"start structure {start!r} does not have the native's residues: "
                f"{straj.n_residues} vs {top.getNumResidues()} residues"
            )
        stop, sx = _omm_from_md(straj)
        _, stop, sx, _ = _prepare_allatom(stop, sx, ff, [], variants)
        x0 = _match_atoms(top, stop, sx, f"start structure {start!r}")
        notes.append(f"start: {start}")

    md_top = _md_topology(top)
    seq = _sequence_of(md_top)
    return System(
        name=f"{label} ({md_top.n_residues} res, {md_top.n_atoms} atoms)",
        kind="protein",
        x0=np.asarray(x0, dtype=np.float64),
        bonds=_bonds(md_top),
        reference=None if reference is None else np.asarray(reference, dtype=np.float64),
        length_unit=PROTEIN_UNITS[0],
        energy_unit=PROTEIN_UNITS[1],
        elements=tuple(a.element.symbol for a in md_top.atoms),
        topology=md_top,
        meta={
            "sequence": seq,
            "n_residues": md_top.n_residues,
            "n_chains": md_top.n_chains,
            "source": label,
            "model": cfg.model,
            "forcefield": " + ".join(FORCEFIELD_FILES[cfg.model]),
            "start": start,
            "notes": notes,
        },
        payload={"model": cfg.model, "openmm_system": system, "openmm_topology": top},
    )


def _build_residue(cfg, seed, pdb_bytes, start_bytes) -> System:
    import mdtraj

    from . import residue_model

    notes: list[str] = []
    if cfg.pdb or pdb_bytes is not None:
        traj, notes, label = _load_source(cfg, pdb_bytes)
        ca = traj.topology.select("name CA")
        n_res = sum(r.name not in _CAPS for r in traj.topology.residues)
        if len(ca) != n_res:
            raise StructureError(f"the structure has {n_res} residues but {len(ca)} CA atoms")
        ca_traj = traj.atom_slice(ca)
        reference = np.asarray(ca_traj.xyz[0], dtype=np.float64)
    else:
        seq = peptide.parse_sequence(cfg.sequence)
        label = f"peptide {seq if len(seq) <= 12 else seq[:10] + '...'}"
        top = mdtraj.Topology()
        chain = top.add_chain()
        for i, c in enumerate(seq):
            res = top.add_residue(peptide.ONE_TO_THREE[c], chain, resSeq=i + 1)
            top.add_atom("CA", mdtraj.element.carbon, res)
        ca_traj = mdtraj.Trajectory(np.zeros((1, len(seq), 3), dtype=np.float32), top)
        reference = None
        notes.append("built from sequence; 'native' is the CA trace of the ideal alpha helix")
    md_top = ca_traj.topology
    for a, b in zip(list(md_top.atoms)[:-1], list(md_top.atoms)[1:], strict=True):
        if a.residue.chain.index == b.residue.chain.index:
            md_top.add_bond(a, b)
    chains = [[r.name for r in ch.residues] for ch in md_top.chains]
    std_chains = [
        [peptide.ONE_TO_THREE[peptide.THREE_TO_ONE[n]] for n in names] for names in chains
    ]
    start = cfg.start
    if start == "native" and reference is not None:
        x0 = reference
    elif start == "native" or _start_is_built(start):
        kind = "helix" if start == "native" else start
        x0 = np.concatenate([bb[:, 1] for bb in _backbones(std_chains, kind, seed)])
        notes.append(f"start: {kind} CA trace" + (f" (seed {seed})" if kind == "random" else ""))
    else:
        data = (
            start_bytes if start_bytes is not None else engine_io.structure_source_bytes(start)[0]
        )
        straj, _ = protein_structure_from_bytes(data, 1)
        sca = straj.atom_slice(straj.topology.select("name CA"))
        if [r.name for r in sca.topology.residues] != [r.name for r in md_top.residues]:
            raise StructureError(f"start structure {start!r} does not have the native's residues")
        x0 = np.asarray(sca.xyz[0], dtype=np.float64)
        notes.append(f"start: {start}")
    seq = _sequence_of(md_top)
    n = md_top.n_atoms
    return System(
        name=f"{label} ({n} residues, CA beads)",
        kind="protein",
        x0=np.asarray(x0, dtype=np.float64),
        bonds=_bonds(md_top),
        reference=None if reference is None else np.asarray(reference, dtype=np.float64),
        length_unit=PROTEIN_UNITS[0],
        energy_unit=PROTEIN_UNITS[1],
        elements=("C",) * n,
        topology=md_top,
        meta={
            "sequence": seq,
            "n_residues": n,
            "n_chains": md_top.n_chains,
            "source": label,
            "model": "residue",
            "forcefield": "residue-level model (docs/residue-model.md); not the paper's",
            "start": start,
            "notes": notes,
        },
        payload={
            "model": "residue",
            "params": residue_model.residue_parameters(seq, _chain_ids(md_top)),
        },
    )


def _chain_ids(md_top) -> np.ndarray:
    return np.array([a.residue.chain.index for a in md_top.atoms], dtype=np.int64)


_CHECK_LOCK = threading.Lock()  # one check at a time: they are CPU-bound, and share the fields


@functools.lru_cache(maxsize=1)
def _check_forcefield():
    """amber14 + OBC2 for ``check_structure`` only (parsing its XML takes about a second; runs
    keep their own instances, so a cached one is never shared across threads)."""
    return _forcefield("amber-obc2")


def check_structure(data: bytes) -> dict:
    """Validate a structure file as a run of it will be built, before accepting it (uploads).

    The same steps as ``build_protein_system`` with the native start: the line scan (cut or
    damaged records, the heavy-atom limit), mdtraj's parse, the protein/water/ligand split,
    finite coordinates, then pdbfixer, OpenMM's hydrogens and amber14 typing, whose templates
    name any residue that cannot be modelled. Only the clash relaxation of built starts and
    the energy tables are left out.

    Returns:
      {"n_residues", "n_atoms" (hydrogens included), "n_heavy", "sequence", "notes"}.

    Raises:
      StructureError: one line saying what cannot be modelled (residues or atoms named).
    """
    with _CHECK_LOCK:
        traj, notes = protein_structure_from_bytes(data, 1)
        try:
            _, top, _, _ = _prepare_allatom(
                *_omm_from_md(traj), _check_forcefield(), notes, platform="CPU"
            )
        except StructureError:
            raise
        except Exception as err:  # pdbfixer and OpenMM raise many kinds on odd structures
            message = str(err).splitlines()[0] if str(err) else ""
            raise StructureError(
                f"OpenMM could not prepare this structure: {type(err).__name__}: {message}"
            ) from None
    heavy = sum(a.element is not None and a.element.symbol not in ("H", "D") for a in top.atoms())
    return {
        "n_residues": top.getNumResidues(),
        "n_atoms": top.getNumAtoms(),
        "n_heavy": heavy,
        "sequence": _sequence_of(traj.topology),
        "notes": notes,
    }


def build_protein_system(
    cfg: SystemConfig,
    seed: int = 0,
    *,
    pdb_bytes: bytes | None = None,
    start_bytes: bytes | None = None,
) -> System:
    """Build a protein System (nm, kJ/mol) from a SystemConfig.

    Args:
      cfg: ``kind="protein"``; reads pdb, sequence, start, model, nmr_model.
      seed: seeds the "random" start.
      pdb_bytes: an uploaded PDB file's contents; used instead of reading ``cfg.pdb`` (which
        then only labels the system).
      start_bytes: an uploaded second structure for the start; used instead of reading
        ``cfg.start`` as a path.

    Returns:
      System with x0/reference [n_atoms, 3] nm, bonds [n_bonds, 2], elements, an mdtraj
      topology, ``meta`` (sequence, notes, ...) and ``payload`` for the energy factory.

    Raises:
      StructureError (ValueError): any unusable input, with one line saying what and where.
    """
    if cfg.model not in MODELS:
        raise StructureError(f"system.model must be one of {', '.join(MODELS)}; got {cfg.model!r}")
    if not (cfg.pdb or cfg.sequence or pdb_bytes is not None):
        raise StructureError(
            "a protein needs system.pdb (path, PDB id or 'villin') or system.sequence"
        )
    if cfg.model == "residue":
        return _build_residue(cfg, seed, pdb_bytes, start_bytes)
    return _build_allatom(cfg, seed, pdb_bytes, start_bytes)
