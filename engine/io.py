"""The only engine module that touches the file system or the network.

Sections: run bundles (config.json, metrics.csv, frames.npz, final structure) and
structure sources (PDB files, uploads, the RCSB download cache).
"""

from __future__ import annotations

# ---- run bundles -------------------------------------------------------------------------

# ---- structure sources (proteins) ---------------------------------------------------------
