"""Synthetic atomic-resolution images with exact ground truth.

Each generator places atom columns on a lattice (with point defects drawn in exact numbers),
renders them as Gaussian columns tile by tile with dask, and adds Poisson and Gaussian noise
drawn in fixed blocks — so a stack of any size is generated in bounded memory and is identical
whatever its chunking. The truth comes with it: per column the position and motif label, per
Bravais cell the labels of its basis sites, the removed sites (vacancies).

Kinds
-----
``tmd``
    A 2H transition-metal-dichalcogenide monolayer (MoS2-like) seen along c: a honeycomb of
    metal columns and chalcogen-pair columns, with single-chalcogen columns (one S missing),
    empty chalcogen sites, metal vacancies and metal-on-chalcogen antisites.
``perovskite``
    An ABO3 perovskite along [001]: A, B(-O) and O columns of decreasing weight.
``shapes``
    A square lattice of columns of equal peak intensity that differ only by shape (round or
    elongated) and orientation, so rotation-invariant features merge the orientations and
    oriented ones separate them.
``twisted``
    A twisted bilayer: two honeycomb lattices rotated by ± twist/2; the truth is the continuous
    local registry (stacking) between the layers, see :func:`twisted_registry`.
``rings``
    A network of equal columns in 5-, 6- and 7-membered rings: a honeycomb with Stone–Wales
    defects; the truth includes each ring.

The modules: :mod:`~dmotif.synthetic.sample` (:class:`Synthetic`, :func:`save`, :func:`load`),
:mod:`~dmotif.synthetic.crystals` (``tmd``, ``perovskite``, ``shapes``),
:mod:`~dmotif.synthetic.twisted`, :mod:`~dmotif.synthetic.networks` (``rings``) and
:mod:`~dmotif.synthetic.stem4d` (4D-STEM data of these lattices: ``dmotif.synthetic_4d.fourd``);
``_lattice``, ``_assembly`` and ``_render`` build them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ParameterError
from .crystals import perovskite, shapes, tmd
from .networks import rings
from .sample import Synthetic, load, save
from .twisted import twisted_bilayer, twisted_registry

__all__ = [
    "KINDS",
    "Synthetic",
    "generate",
    "load",
    "perovskite",
    "rings",
    "save",
    "shapes",
    "tmd",
    "twisted_bilayer",
    "twisted_registry",
]


KINDS: dict[str, Callable[..., Synthetic]] = {
    "tmd": tmd,
    "perovskite": perovskite,
    "shapes": shapes,
    "twisted": twisted_bilayer,
    "rings": rings,
}


def generate(kind: str, **kwargs: Any) -> Synthetic:
    """Generate a synthetic sample of ``kind`` (one of :data:`KINDS`) with ``kwargs``."""
    try:
        maker = KINDS[kind]
    except KeyError:
        raise ParameterError(
            f"unknown synthetic kind {kind!r}; choose one of {sorted(KINDS)}."
        ) from None
    return maker(**kwargs)
