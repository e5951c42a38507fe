"""Peptide chains from one-letter sequences, on ideal internal geometry.

Contract: ``backbone_positions(n_res, phi, psi)`` returns N, CA, C, O positions [n_res, 4, 3]
(nm) placed atom by atom from bond lengths, bond angles and torsions (the NeRF construction
[1]); ``parse_sequence`` validates one-letter codes. Side chains, the C-terminal OXT and
hydrogens are added afterwards from OpenMM/pdbfixer residue templates (engine/protein/build.py),
so this module only needs the backbone.

Geometry: Engh & Huber [2] ideal values: N-CA 1.458 Å, CA-C 1.525 Å, C-N 1.329 Å (the peptide
bond; the paper's "1.32 Å"), C=O 1.231 Å; angles N-CA-C 111.2°, CA-C-N 116.2°, C-N-CA 121.7°,
CA-C-O 120.5°; trans peptide bonds (omega = 180°).

[1] Parsons et al., J. Comput. Chem. 26, 1063 (2005).
[2] Engh & Huber, Acta Cryst. A47, 392 (1991).
"""

from __future__ import annotations

import numpy as np

ONE_TO_THREE = {
    "A": "ALA", "R": "ARG", "N": "ASN", "D": "ASP", "C": "CYS", "Q": "GLN", "E": "GLU",
    "G": "GLY", "H": "HIS", "I": "ILE", "L": "LEU", "K": "LYS", "M": "MET", "F": "PHE",
    "P": "PRO", "S": "SER", "T": "THR", "W": "TRP", "Y": "TYR", "V": "VAL",
}  # fmt: skip
THREE_TO_ONE = {v: k for k, v in ONE_TO_THREE.items()}
# AMBER protonation/bridging variants read back to their standard one-letter code
THREE_TO_ONE.update({"HID": "H", "HIE": "H", "HIP": "H", "CYX": "C", "CYM": "C", "ASH": "D",
                     "GLH": "E", "LYN": "K"})  # fmt: skip
MAX_SEQUENCE_LENGTH = 1000

# (phi, psi) in degrees for the named conformations
CONFORMATIONS = {"extended": (180.0, 180.0), "helix": (-57.0, -47.0)}
PRO_PHI = -63.0  # proline's ring fixes phi near -63 degrees in every conformation

_B_N_CA, _B_CA_C, _B_C_N, _B_C_O = 0.1458, 0.1525, 0.1329, 0.1231  # nm
_A_N_CA_C, _A_CA_C_N, _A_C_N_CA, _A_CA_C_O = np.deg2rad([111.2, 116.2, 121.7, 120.5])


def parse_sequence(sequence: str) -> str:
    """Validate and normalise a one-letter sequence (case and whitespace ignored).

    Raises:
      ValueError: empty, longer than MAX_SEQUENCE_LENGTH, or with letters outside the 20
        standard amino acids (the message lists them and their positions).
    """
    seq = "".join(str(sequence).split()).upper()
    if not seq:
        raise ValueError("system.sequence is empty; give one-letter codes such as DAYAQWLKDG")
    bad = [(i + 1, c) for i, c in enumerate(seq) if c not in ONE_TO_THREE]
    if bad:
        shown = ", ".join(f"{c!r} at {i}" for i, c in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise ValueError(
            f"system.sequence has letters that are not standard amino acids: {shown} "
            f"(allowed: {''.join(sorted(ONE_TO_THREE))})"
        )
    if len(seq) > MAX_SEQUENCE_LENGTH:
        raise ValueError(
            f"system.sequence has {len(seq)} residues; the limit is {MAX_SEQUENCE_LENGTH}"
        )
    return seq


def place_atom(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float, torsion: float
) -> np.ndarray:
    """Position of atom d with |cd| = bond, angle bcd = angle, torsion abcd = torsion (rad).

    Args:
      a, b, c: [3] positions of the three preceding atoms (any length unit).

    Returns:
      [3] position of d, in the unit of a, b, c.
    """
    bc = c - b
    bc = bc / np.linalg.norm(bc)
    n = np.cross(b - a, bc)
    n = n / np.linalg.norm(n)
    m = np.cross(n, bc)
    local = bond * np.array([-np.cos(angle), np.sin(angle) * np.cos(torsion),
                             np.sin(angle) * np.sin(torsion)])  # fmt: skip
    return c + local[0] * bc + local[1] * m + local[2] * n


def backbone_positions(
    n_res: int, phi: np.ndarray | float, psi: np.ndarray | float, omega: np.ndarray | float = 180.0
) -> np.ndarray:
    """Backbone N, CA, C, O positions of a chain with the given torsions.

    Args:
      n_res: number of residues (>= 1).
      phi, psi, omega: scalars or [n_res] arrays in degrees. phi[0] and psi/omega of the last
        residue are unused except psi[-1], which orients the last carbonyl O.

    Returns:
      [n_res, 4, 3] float64 positions in nm, atoms in the order N, CA, C, O; the first N at
      the origin and the first CA on +x.
    """
    phi, psi, omega = (np.deg2rad(np.broadcast_to(np.asarray(a, float), (n_res,)))
                       for a in (phi, psi, omega))  # fmt: skip
    x = np.zeros((n_res, 4, 3))
    x[0, 1] = [_B_N_CA, 0.0, 0.0]
    x[0, 2] = x[0, 1] + _B_CA_C * np.array([-np.cos(_A_N_CA_C), np.sin(_A_N_CA_C), 0.0])
    for i in range(1, n_res):
        n_prev, ca_prev, c_prev = x[i - 1, 0], x[i - 1, 1], x[i - 1, 2]
        x[i, 0] = place_atom(n_prev, ca_prev, c_prev, _B_C_N, _A_CA_C_N, psi[i - 1])
        x[i, 1] = place_atom(ca_prev, c_prev, x[i, 0], _B_N_CA, _A_C_N_CA, omega[i - 1])
        x[i, 2] = place_atom(c_prev, x[i, 0], x[i, 1], _B_CA_C, _A_N_CA_C, phi[i])
    for i in range(n_res):
        # O is in the peptide plane, trans to the next N: torsion N-CA-C-O = psi + 180
        x[i, 3] = place_atom(x[i, 0], x[i, 1], x[i, 2], _B_C_O, _A_CA_C_O, psi[i] + np.pi)
    return x


def random_coil_torsions(n_res: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(phi, psi) [n_res] in degrees drawn from the alpha-helix and beta basins.

    Each residue picks alpha (-63, -43) with probability 0.5, else beta (-120, 130), plus
    Gaussian noise of 15 degrees: a compact, sterically plausible random coil.
    """
    alpha = rng.random(n_res) < 0.5
    phi = np.where(alpha, -63.0, -120.0) + 15.0 * rng.standard_normal(n_res)
    psi = np.where(alpha, -43.0, 130.0) + 15.0 * rng.standard_normal(n_res)
    return phi, psi
