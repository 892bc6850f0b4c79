"""Command-line flags generated from a settings dataclass, so each flag has one definition: its name, type, default
and help come from the dataclass field (``metadata={"help": ...}``); fields without help get no flag.

``add_dataclass_arguments(group, EndpointSettings, prefix="remote-")`` gives the same flags again for a second
endpoint (``--remote-base-url`` ...), and ``values_from_args`` reads them back by field name.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing


def _plain_type(hint) -> type:
    """``int | None`` -> ``int``; ``str`` -> ``str``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if args else str
    return hint if isinstance(hint, type) else str


def flag_fields(cls) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are command-line flags (those with ``help`` in their metadata)."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def add_dataclass_arguments(group, cls, *, prefix: str = "", skip: tuple[str, ...] = ()) -> None:
    """Add ``--{prefix}{field-name}`` for each flag field of ``cls`` to ``group``, default as the dataclass has it."""
    hints = typing.get_type_hints(cls)
    for f in flag_fields(cls):
        if f.name in skip:
            continue
        meta = f.metadata
        name = "--" + prefix + f.name.replace("_", "-")
        default = None if f.default is dataclasses.MISSING else f.default
        kind = _plain_type(hints[f.name])
        kw: dict = {"dest": (prefix.replace("-", "_") + f.name), "help": meta["help"]}
        if kind is bool:
            group.add_argument(name, action="store_true", **kw)
            continue
        if "metavar" in meta:
            kw["metavar"] = meta["metavar"]
        if "choices" in meta:
            kw["choices"] = list(meta["choices"])
        group.add_argument(name, type=kind, default=default, **kw)


def values_from_args(args: argparse.Namespace, cls, *, prefix: str = "", skip: tuple[str, ...] = ()) -> dict:
    """The flag values of ``cls``'s fields in ``args`` by field name (fields whose flag was not added are left out)."""
    out = {}
    for f in flag_fields(cls):
        dest = prefix.replace("-", "_") + f.name
        if f.name not in skip and hasattr(args, dest):
            out[f.name] = getattr(args, dest)
    return out
