"""A parameter is declared once: default, accepted range, unit, label and help.

Every user-facing field of the run configuration (engine/config.py) is a dataclass field made
by ``param(default, ...)``, which keeps a ``Param`` in the field's metadata. Everything else is
generated from that one declaration:

  - validation: ``validate(config, prefix)`` in each config's ``__post_init__``;
  - parsing of text input with the same messages: ``Param.parse`` (form boxes, CLI flags);
  - the workbench form fields (workbench/forms.py) and the CLI flags (engine/cli.py);
  - the axes a sweep may vary: ``params(RunSpec)``.

So the range a user sees next to a box or in ``--help`` is the range the engine accepts.
Messages name the field and the range: ``system.n must be an integer in [50, 4000], got 12``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

KINDS = ("int", "float", "choice", "bool", "text")


class SpecError(ValueError):
    """An invalid user choice. ``field`` is the dotted field name (or a form key / flag)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field} {message}")
        self.field = field


def number_text(v) -> str:
    """A bound as people write it: 0.02, 1e-06, 4000."""
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclasses.dataclass(frozen=True)
class Param:
    """How one configuration field is chosen, shown and checked.

    kind: "int" | "float" | "choice" | "bool" | "text".
    label, help: the form's label and hover text, the CLI's help.
    lo, hi: closed bounds of a number; ``lo_open`` makes the lower one open (lr > 0).
    options: (value, label) pairs of a choice.
    optional: None is accepted (blank box, flag not given); ``blank`` says what None means.
    unit: the unit of a number ("" when dimensionless or the system's own unit).
    section: the form section that shows it for every method ("loop", "protein", "energy",
        "modes", "optim", "schedule"); None: not on the shared form (methods may still list it).
    flag: the CLI flag name when it is not the field name with dashes; "" for no flag.
    """

    kind: str
    label: str
    help: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    options: tuple = ()
    optional: bool = False
    blank: str = ""
    unit: str = ""
    section: str | None = None
    flag: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Param.kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind in ("int", "float") and (self.lo is None or self.hi is None):
            raise ValueError(f"numeric Param {self.label!r} needs lo and hi")

    @property
    def values(self) -> tuple:
        """The accepted values of a choice."""
        return tuple(v for v, _ in self.options)

    def interval(self) -> str:
        """ "[50, 4000]" or "(0, 10]" for numbers, "" otherwise."""
        if self.kind not in ("int", "float"):
            return ""
        left = "(" if self.lo_open else "["
        return f"{left}{number_text(self.lo)}, {number_text(self.hi)}]"

    def range_text(self) -> str:
        """What the form shows under a number's label: its interval, and what blank means."""
        text = self.interval()
        return text + (f"; blank: {self.blank}" if text and self.optional else "")

    def _what(self) -> str:
        return "an integer" if self.kind == "int" else "a number"

    def check(self, name: str, value: Any) -> None:
        """Raise SpecError(name, ...) unless ``value`` is acceptable."""
        if value is None and self.optional:
            return
        if self.kind in ("int", "float"):
            ok = not isinstance(value, bool) and isinstance(value, (int, float))
            ok = ok and math.isfinite(value) and self.lo <= value <= self.hi
            ok = ok and not (self.lo_open and value <= self.lo)
            if not ok or (self.kind == "int" and not float(value).is_integer()):
                raise SpecError(name, f"must be {self._what()} in {self.interval()}, got {value!r}")
        elif self.kind == "choice" and value not in self.values:
            choices = ", ".join(map(str, self.values))
            raise SpecError(name, f"must be one of {choices}; got {value!r}")
        elif self.kind == "bool" and not isinstance(value, bool):
            raise SpecError(name, f"must be true or false, got {value!r}")
        elif self.kind == "text" and not isinstance(value, str):
            raise SpecError(name, f"must be text, got {value!r}")

    def parse(self, name: str, raw: Any) -> Any:
        """Text input (a form box, a CLI flag) -> a checked value; SpecError(name, ...) names
        the accepted range and echoes what was typed."""
        if self.kind == "bool":
            if isinstance(raw, str):
                if raw.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise SpecError(name, f"must be true or false, got {raw!r}")
                return raw.strip().lower() in ("true", "1", "yes")
            return bool(raw)
        text = "" if raw is None else str(raw).strip()
        if self.kind == "text":
            return text or None if self.optional else text
        if text == "":
            if self.optional:
                return None
            if self.kind == "choice":
                raise SpecError(name, f"is required: one of {', '.join(map(str, self.values))}")
            raise SpecError(name, f"is required: {self._what()} in {self.interval()}")
        if self.kind == "choice":
            self.check(name, text)
            return text
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if self.kind == "int" and math.isfinite(value) and value.is_integer():
            value = int(value)
        try:
            self.check(name, value)
        except SpecError:
            msg = f"must be {self._what()} in {self.interval()}, got {text!r}"
            raise SpecError(name, msg) from None
        return value


def param(default: Any, kind: str, label: str, help: str, **kw) -> Any:
    """A dataclass field with its ``Param`` in the metadata (see ``Param`` for the keywords)."""
    return dataclasses.field(default=default, metadata={"param": Param(kind, label, help, **kw)})


def param_of(cls_or_obj, name: str) -> Param | None:
    """The Param declared for field ``name`` of a config class, or None."""
    for f in dataclasses.fields(cls_or_obj):
        if f.name == name:
            return f.metadata.get("param")
    return None


def validate(config, prefix: str, skip: tuple[str, ...] = ()) -> None:
    """Check every declared field of ``config`` (names ``prefix.field``), except ``skip``."""
    for f in dataclasses.fields(config):
        p = f.metadata.get("param")
        if p is not None and f.name not in skip:
            p.check(f"{prefix}.{f.name}" if prefix else f.name, getattr(config, f.name))


@dataclasses.dataclass(frozen=True)
class Entry:
    """One declared parameter of a nested config: its dotted path, default and Param."""

    path: str
    default: Any
    param: Param


def params(cls, prefix: str = "") -> list[Entry]:
    """Every declared parameter of ``cls`` and its nested configs, in declaration order
    (nested configs first, then top-level fields: the order forms and ``--help`` show)."""
    nested, top = [], []
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(f.type if isinstance(f.type, type) else None):
            nested.extend(params(f.type, path + "."))
        elif dataclasses.is_dataclass(f.default):
            nested.extend(params(type(f.default), path + "."))
        elif "param" in f.metadata:
            top.append(Entry(path, f.default, f.metadata["param"]))
    return nested + top


def entry(cls, path: str) -> Entry:
    """The declared parameter at a dotted ``path`` of ``cls``; KeyError if none."""
    for e in params(cls):
        if e.path == path:
            return e
    raise KeyError(path)
