"""The workbench page as panels, one module each (Dash's "All-in-One component" pattern).

A panel module (system, spectrum, method, live, runs; later sweep, lessons) has, top to bottom:

- ``class ID``: every id the panel owns (upper-case string constants, plus static factories
  for pattern ids of repeated widgets). Other panels refer to them as ``method.ID.RUN_BTN``;
  the JavaScript reads them from ``window.WB_IDS.<panel>.<NAME>`` (see workbench/layout.py).
- ``layout(ctx: PageContext) -> Component``: the panel's fragment of the page, its Stores and
  Intervals included.
- pure helpers: plain values in, plain values or components out; unit-tested directly.
- its callbacks, registered with Dash when the module is imported (``@callback``); each one
  reads its inputs, calls a helper, and returns outputs.

Panels import each other only for ids, in one direction (system <- spectrum <- method <- live
<- runs), so no import cycle can form. ``workbench/layout.py`` composes the panels into the page.
"""

from __future__ import annotations

import dataclasses

from dash import ctx

from .. import forms
from ..uploads import UploadLimits


@dataclasses.dataclass(frozen=True)
class PageContext:
    """What the panels' layouts are built from (server settings, never per-session state).

    Attributes:
        structures: [(label, path)] of protein structures offered on this machine.
        presets: {name: (description, [RunSpec])} of the paper's figures.
        upload_limits: the server's limits on uploaded structures (workbench/uploads.py).
        start_preset: the preset whose settings fill the form a page opens with (or None).
    """

    structures: tuple = ()
    presets: dict = dataclasses.field(default_factory=dict)
    upload_limits: UploadLimits = dataclasses.field(default_factory=UploadLimits)
    start_preset: str | None = None

    def start_values(self) -> dict:
        """Widget values of the form a page opens with (the start preset's, else defaults)."""
        preset = self.presets.get(self.start_preset)
        return forms.start_values(preset[1] if preset else None)


def triggered_value():
    """Value of the property that fired a callback (None/0 when a new pattern-matched
    component merely appeared, e.g. the buttons of a freshly rendered card)."""
    return ctx.triggered[0]["value"] if ctx.triggered else None
