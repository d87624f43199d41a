"""Where every weight came from, and whether its values follow the law it was given.

**Provenance.** ``materialize`` and ``apply_recipe`` see every write they make to a model's
tensors; they keep, per parameter and buffer, the ordered list of those writes
(:class:`Write`): the law and its parameters, the init code that asked for it (the
innermost frame outside fastinit, torch's internals and transformers' init wrappers:
e.g. transformers' ``_init_weights``, or ``torch.nn.Linear.reset_parameters`` for
torch's defaults), the seed and stream, the region written (``None``: the whole tensor,
else e.g. ``"rows 0:1"``) and whether a later write overwrote it. Ties (one tensor under
several names) end with a ``"tie"`` write naming the source. :func:`provenance` returns
them. Recording is always on in ``materialize`` and ``apply_recipe`` (it costs a frame
walk and a tuple per write; see bench/RESULTS.md); for code run under
``fastinit.patch()``, open :func:`recording` around it (what ``patch`` routes is recorded:
``torch.nn.init`` calls and ``Tensor.normal_`` / ``uniform_``; writes made with other torch
operations are not seen there). Records live outside the model (a weak mapping): its
``state_dict``, parameters and checkpoints are unchanged.

**Law check.** :func:`check_laws` compares each tensor's values with the law recorded for
them and its shape with the references for it, and returns :class:`fastinit.findings.Finding`
records (:func:`law_table` gives the numbers behind them): checks ``"law"`` (each region's
values against its law: Kolmogorov-Smirnov, moments, bounds), ``"fan"``, ``"siblings"``,
``"scale"``, ``"tie"`` and ``"unmatched-rule"``; :mod:`fastinit.lawcheck` documents each
check and its threshold.

This module is the public face; the work is done by job and re-exported here: recording
(sessions, the hooks that note each write, its site) in :mod:`fastinit.sessions`, the
records per model (:class:`Write`, :func:`provenance`) in :mod:`fastinit.records`, the law
check in :mod:`fastinit.lawcheck`. The module itself is callable:
``fastinit.provenance(model)`` is :func:`provenance`.
"""
from __future__ import annotations

import sys

from torch import nn

from fastinit.lawcheck import (
    FAN_FACTOR,
    KS_ALPHA,
    MIN_MOMENT_N,
    SAMPLE_MAX,
    SCALE_FACTOR,
    SIBLING_FACTOR,
    Z_MAX,
    _moments,
    check_laws,
    law_table,
)
from fastinit.records import Write, provenance
from fastinit.sessions import (
    note,
    note_factory,
    note_op,
    note_unmatched,
    recorded,
    recording,
    replaying,
    session,
    site,
)

__all__ = ["Write", "provenance", "recording", "law_table", "check_laws", "SAMPLE_MAX",
           "KS_ALPHA", "Z_MAX", "FAN_FACTOR", "SIBLING_FACTOR", "SCALE_FACTOR"]


class _CallableModule(type(sys)):
    """``fastinit.provenance(model)`` is :func:`provenance`; the module's other names
    (``fastinit.provenance.check_laws``, ``.recording``...) stay reachable on it."""

    def __call__(self, model: nn.Module) -> dict[str, list[Write]]:
        return provenance(model)


sys.modules[__name__].__class__ = _CallableModule
