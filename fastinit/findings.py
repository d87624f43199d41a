"""What a check found: one type shared by the law check and the signal-propagation check.

A :class:`Finding` names the tensor or module it concerns, the check that raised it, and
a sentence a user can act on; ``observed`` and ``expected`` carry the numbers behind it
where there are numbers. This module only defines the record; the checks live in
``fastinit.provenance`` (the values against their recorded law and their shape) and
``fastinit.propagation`` (activations and gradients through the model).
"""
from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Finding:
    """One flagged tensor or module.

    Attributes:
        name: the parameter, buffer or module name (``""`` for the whole model).
        check: a short identifier of the check, e.g. ``"law"``, ``"fan"``, ``"siblings"``,
            ``"tie"``, ``"unmatched-rule"``, ``"activation-growth"``, ``"dead-units"``.
        message: one sentence saying what is wrong and why it matters.
        observed: the measured number behind the finding, if any.
        expected: what the check expected instead, if any.
    """

    name: str
    check: str
    message: str
    observed: Optional[float] = None
    expected: Optional[float] = None

    def as_dict(self) -> dict:
        """The finding as plain JSON-serializable data."""
        return dataclasses.asdict(self)
