"""``fastinit.provenance``: the public face of the recording, the records and the law check.

The work is tested by module (``test_sessions.py``, ``test_records.py``,
``test_lawcheck.py``); here: the module is callable (``fastinit.provenance(model)``), every
name it promises is the one the working module defines, and the promised names are exported.
"""
from __future__ import annotations

import torch
from torch import nn

import fastinit
from fastinit import lawcheck, records, sessions
from fastinit import provenance as P


def test_the_module_is_callable_and_gives_the_records():
    with torch.device("meta"):
        model = nn.Linear(6, 3)
    fastinit.materialize(model, "cpu", seed=0)
    assert fastinit.provenance is P
    called = fastinit.provenance(model)
    assert called.keys() == {"weight", "bias"}
    assert called == P.provenance(model)
    assert [w.function for w in called["weight"]] == ["kaiming_uniform_"]


def test_every_promised_name_is_the_working_modules():
    homes = {"Write": records, "provenance": records, "recording": sessions,
             "law_table": lawcheck, "check_laws": lawcheck}
    for name in P.__all__:
        home = homes.get(name, lawcheck)  # the thresholds are the law check's
        assert getattr(P, name) is getattr(home, name), name
    assert set(homes) <= set(P.__all__)
