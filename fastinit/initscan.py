"""Before a plain meta build is materialized: does ``__init__`` do init work the re-run loses?

A model built under ``torch.device("meta")`` keeps nothing of its construction, so
``materialize`` runs the model's init code again (``fastinit.modelinit.run_model_init``):
every module's ``reset_parameters()`` children first, then the model-level entry point.
Whatever a module's ``__init__`` wrote beyond that - torchvision's ResNet drawing its
convolutions Kaiming-normal (fan_out) and zeroing the last norm of each block, timm's
``_init_weight_goog``, a ControlNet's zero convolutions - is not redone: the re-run would
hand back torch's layer defaults where eager construction has the model's own init.

:func:`check` finds that work statically, before anything is allocated, from the source of
the ``__init__`` of every class in each module's MRO (``inspect.getsource`` and ``ast``,
once per class), and raises :class:`LostInitError` naming the class, the file and line of
the statement, and the fix (``fastinit.empty_init()``, which records construction).

What counts as init work in ``__init__`` (and in the class's own methods it calls on
``self``, one level deep):

* calls of init functions: ``torch.nn.init.*`` (however imported or aliased), fastinit's,
  and any function named like an initializer (``*init*``, ``trunc_normal_``, ...) -
  ``self._init_weights()``, ``efficientnet_init_weights(self)``, ``named_apply(...)``;
* ``self.apply(...)`` / ``<submodule>.apply(...)``;
* in-place writes of tensors: ``normal_``, ``uniform_``, ``zero_``, ``fill_``, ``copy_``,
  ``mul_`` and the other in-place random / fill / arithmetic methods, assignments to
  ``.data`` and item assignments through ``.data``;
* factories that give values (``torch.randn``, ``torch.zeros``, ``torch.ones``,
  ``torch.full``...) in a class that has a reset routine the re-run calls (its own
  ``reset_parameters()`` or a torch layer's it inherits), which would overwrite them. In a
  class without one, a tensor made that way is not written by the re-run, and
  ``materialize`` refuses it as uninitialized memory, naming it.

Calls of methods on ``self`` are followed into the method (one level), as are calls of
plain functions of the model's code (``zero_module(conv)``); inside those, calls are
judged by their names.

Not counted (the re-run redoes it): a call of the module's own reset routine
(``self.reset_parameters()``, or the one ``run_model_init`` calls) and everything before
the last such call at the top level of the same ``__init__``; ``<child>.reset_parameters()``;
torch's own classes (``torch.*``: their construction is their ``reset_parameters``).

Trusted entry points (quiet, as the model's own init re-does everything): a Hugging Face
``PreTrainedModel`` (``initialize_weights()``) and every module inside it; the root module
of a model outside Hugging Face's when it has an ``init_weights()`` method (torchtitan,
olmo-core, timm's ResNets and Vision Transformers), which ``run_model_init`` calls - its
own ``__init__`` is not checked, its children's are (a root ``init_weights()`` that only
resets its layers, as timm's LeViT's, does not redo what a child's ``__init__`` did);
PEFT's LoRA layers when
every adapter's ``init_lora_weights`` is data-free (``True``, ``False``, ``"gaussian"``:
``run_model_init`` calls their ``reset_lora_parameters``). A model-level entry point
``run_model_init`` does not call (``init_states``, an ``init_weights`` of a submodule)
is not trusted.

A class whose ``__init__`` source cannot be read (defined interactively, generated, or
compiled) cannot be checked: it is refused the same way (``torch.*`` classes excepted).

A ``recipe=`` given to ``materialize`` that rewrites every parameter of the model makes the
model's own init moot: nothing is refused then.

The check is conservative: code that re-creates what ``reset_parameters`` also gives is
refused too (a false refusal, with the same clear message). Pass
``accept_reset_defaults=True`` to ``materialize`` to get the modules' ``reset_parameters()``
defaults anyway.
"""
from __future__ import annotations

import ast
import builtins
import functools
import inspect
import re
import textwrap
import types
from dataclasses import dataclass
from typing import Iterable

from torch import nn

__all__ = ["Finding", "LostInitError", "scan", "scan_class", "check", "ambiguous_ties"]


class LostInitError(ValueError):
    """A plain meta build whose modules' ``__init__`` does init work that ``materialize``
    cannot redo (see :mod:`fastinit.initscan`)."""


@dataclass(frozen=True)
class Finding:
    """One statement of init work in a module class's construction code."""

    cls: str       #: qualified name of the class whose code it is
    file: str      #: source file
    line: int      #: line in that file
    what: str      #: what the statement does

    def __str__(self) -> str:
        return f"{self.cls} ({self.file}:{self.line}: {self.what})"


#: torch.nn.init's functions (and the deprecated non-underscore aliases) and fastinit's extras
_INIT_FUNCTIONS = frozenset(
    [n for n in dir(nn.init) if n.endswith("_") and not n.startswith("_")]
    + ["uniform", "normal", "constant", "xavier_uniform", "xavier_normal", "kaiming_uniform",
       "kaiming_normal", "orthogonal", "sparse", "dirac", "eye", "trunc_normal",
       "scaled_residual_", "variance_scaling_", "lecun_normal_", "lecun_uniform_",
       "mean_resize_embeddings_", "named_apply"])

#: fastinit.init and the modules whose functions it re-exports (fastinit.provenance's
#: _INIT_FILES names the same files)
_FRONT_END = frozenset({"fastinit.init", "fastinit.arguments", "fastinit.structured",
                        "fastinit.embeddings"})

#: functions named like initializers (the name, not where it comes from)
_INIT_NAME = re.compile(r"(^|_)init($|_|[A-Z])|initiali[sz]e|trunc_normal|"
                        r"(^|_)(kaiming|xavier|lecun|glorot)_")

#: in-place tensor methods that write values
_INPLACE = frozenset([
    "normal_", "uniform_", "zero_", "fill_", "copy_", "random_", "bernoulli_", "exponential_",
    "log_normal_", "cauchy_", "geometric_", "fill_diagonal_", "trunc_normal_", "mul_",
    "div_", "add_", "sub_", "clamp_", "clip_", "masked_fill_", "masked_scatter_",
    "index_fill_", "index_copy_", "index_add_", "scatter_", "scatter_add_", "set_", "neg_",
    "abs_", "sqrt_", "exp_", "log_", "pow_", "tanh_", "sigmoid_"])

_RANDOM_FACTORIES = frozenset([
    "rand", "randn", "randint", "randperm", "normal", "rand_like", "randn_like",
    "randint_like", "bernoulli", "multinomial", "poisson"])

_FIXED_FACTORIES = frozenset([
    "zeros", "ones", "full", "tensor", "arange", "eye", "linspace", "logspace", "as_tensor",
    "zeros_like", "ones_like", "full_like", "new_zeros", "new_ones", "new_full",
    "new_tensor", "tril", "triu"])

_RESET_NAMES = ("reset_parameters", "_reset_parameters")


def _reset_name(cls: type) -> str | None:
    """The reset routine ``run_model_init`` calls on a module of class ``cls``."""
    return next((n for n in _RESET_NAMES if callable(getattr(cls, n, None))), None)


def _text(chain: list[str]) -> str:
    out = ""
    for part in chain:
        out += part if part in ("()", "[]") or not out else "." + part
    return out


def _dotted(node: ast.AST) -> list[str]:
    """``a.b.c`` -> ["a", "b", "c"] (calls and subscripts in the chain kept as "()" / "[]")."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Name):
            parts.append(node.id)
            break
        elif isinstance(node, ast.Call):
            parts.append("()")
            node = node.func
        elif isinstance(node, ast.Subscript):
            parts.append("[]")
            node = node.value
        else:
            parts.append("?")
            break
    return parts[::-1]


class _Source:
    """A function's parsed source, with line numbers of its file."""

    def __init__(self, fn) -> None:
        lines, first = inspect.getsourcelines(fn)
        self.file = inspect.getsourcefile(fn) or inspect.getfile(fn)
        self.scope = getattr(fn, "__globals__", {})
        tree = ast.parse(textwrap.dedent("".join(lines)))
        self.fn = next(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef,
                                                                    ast.AsyncFunctionDef)))
        self.offset = first - 1

    def line(self, node: ast.AST) -> int:
        return node.lineno + self.offset


def _source(fn) -> _Source | None:
    """``fn``'s parsed source; None when it cannot be read (defined interactively,
    generated, compiled, or not a function)."""
    try:
        return _Source(fn)
    except (OSError, TypeError, SyntaxError, StopIteration):
        return None


def _function(cls: type, name: str):
    fn = cls.__dict__.get(name)
    if isinstance(fn, (staticmethod, classmethod)):
        fn = fn.__func__
    return inspect.unwrap(fn) if callable(fn) else None


def _resolve(chain: list[str], scope: dict):
    """The object a dotted call name refers to in the function's module (``trunc_normal_``
    imported under another name, ``init.normal_``), walking modules only; else None."""
    if not chain or chain[0] in ("self", "()", "[]", "?"):
        return None
    obj = scope.get(chain[0], getattr(builtins, chain[0], None))
    for part in chain[1:]:
        if not isinstance(obj, types.ModuleType) or part in ("()", "[]", "?"):
            return None
        obj = getattr(obj, part, None)
    return _unpartial(obj)  # functools.partial(nn.init.trunc_normal_, ...)


def _indirect_init(func: ast.AST, scope: dict) -> str | None:
    """An init function reached indirectly: ``getattr(nn.init, name)(...)``, or kept in a
    dict / list of the module (``INITS["w"](...)``, torchtitan-style tables of partials)."""
    if isinstance(func, ast.Call) and isinstance(func.func, ast.Name) \
            and func.func.id == "getattr" and func.args:
        owner = _dotted(func.args[0])
        if owner[-1] == "init" or _resolve(owner, scope) is nn.init:
            return f"getattr({_text(owner)}, ...)"
    if isinstance(func, ast.Subscript):
        table = _resolve(_dotted(func.value), scope)
        values = table.values() if isinstance(table, dict) else (
            table if isinstance(table, (list, tuple)) else ())
        if any(_is_init_function(_unpartial(v)) for v in values):
            return f"{_text(_dotted(func.value))}[...]"
    return None


def _unpartial(obj):
    while isinstance(obj, functools.partial):
        obj = obj.func
    return obj


def _is_init_function(obj) -> bool:
    """torch.nn.init's functions and fastinit's (not its classes or other helpers)."""
    if isinstance(obj, type) or not callable(obj):
        return False
    module = getattr(obj, "__module__", None) or ""
    return module == "torch.nn.init" or module in _FRONT_END or (
        module.startswith("fastinit") and getattr(obj, "__name__", "") in _INIT_FUNCTIONS)


def _classify_call(node: ast.Call, reset: str | None, scope: dict) -> tuple[str, object] | None:
    """``(kind, what)`` of a call that does init work, or None. ``kind`` is "work",
    "reset" (the module's re-run reset), "fixed" (deterministic factory), "self" (a method
    called on self, to follow), "self-work" (an init-named one: work, and followed) or
    "free" (a plain function of the model's code, to follow)."""
    chain = _dotted(node.func)
    name = chain[-1]
    text = _text(chain)
    indirect = _indirect_init(node.func, scope)
    if indirect:
        return ("work", f"calls init function {indirect}(...)")
    if name == "__init__" or (chain[:2] == ["super", "()"] and name in _RESET_NAMES):
        return None
    if name in _RESET_NAMES:
        if chain[0] == "self" and len(chain) == 2 and name != reset:
            return ("self", name)  # the other spelling: a helper, not what the re-run calls
        return ("reset", text)     # self.reset_parameters(), child.reset_parameters()
    if name == "apply" and len(chain) >= 2:
        return ("work", f"calls {text}(...)")
    target = _resolve(chain, scope)
    if _is_init_function(target) or (
            name in _INIT_FUNCTIONS and (len(chain) == 1 or chain[-2] in ("init", "fastinit"))):
        return ("work", f"calls init function {text}(...)")
    if name in _INPLACE and len(chain) >= 2:
        return ("work", f"in-place {name} on {_text(chain[:-1])}")
    if name in _RANDOM_FACTORIES and (len(chain) == 1 or chain[-2] == "torch"):
        return ("fixed", f"random factory {text}(...)")
    if name in _FIXED_FACTORIES and (chain[0] == "torch" or name.startswith("new_")):
        return ("fixed", f"factory {text}(...)")
    if name in _INIT_FUNCTIONS or _INIT_NAME.search(name):
        if chain[0] == "self" and len(chain) == 2:
            return ("self-work", f"calls init helper {text}(...)")
        return ("work", f"calls init function {text}(...)")
    if chain[0] == "self" and len(chain) == 2:
        return ("self", name)
    if isinstance(target, types.FunctionType) and not _is_torch(target):
        return ("free", target)
    return None


def _is_torch(obj) -> bool:
    """Whether ``obj`` (a class or a function) is defined in torch."""
    module = obj.__module__ or ""
    return module == "torch" or module.startswith("torch.")


def _data_write(node: ast.AST) -> str | None:
    """An assignment target that writes tensor data: ``x.data = ...``, ``x.data[i] = ...``,
    ``self.w[...] = ...``."""
    if isinstance(node, ast.Attribute) and node.attr == "data":
        return f"assigns {_text(_dotted(node))}"
    if isinstance(node, ast.Subscript):
        chain = _dotted(node.value)
        if "data" in chain or (chain[0] == "self" and chain[-1] in ("weight", "bias")):
            return f"item assignment to {_text(chain)}[...]"
    return None


def _targets(stmt: ast.AST) -> Iterable[ast.AST]:
    if isinstance(stmt, ast.Assign):
        for t in stmt.targets:
            yield from (t.elts if isinstance(t, (ast.Tuple, ast.List)) else (t,))
    elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
        yield stmt.target


def _scan_function(src: _Source, owner: str, cls_reset: str | None, fixed_counts: bool,
                   follow=None) -> list[Finding]:
    """Findings in one function; ``follow(name or function)`` scans a method called on
    self or a plain function (the first level only: ``follow=None`` inside them, where a
    call of an init-named method counts by its name)."""
    found: list[tuple[int, Finding]] = []
    resets: list[int] = []  # lines of the calls of the re-run reset that always run
    fresh = _fresh_locals(src.fn)
    always = {id(s.value) for s in _top_level(src.fn.body)
              if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)}
    for node in ast.walk(src.fn):
        if isinstance(node, ast.Call):
            kind = _classify_call(node, cls_reset, src.scope)
            if kind is None:
                continue
            k, what = kind
            line = src.line(node)
            chain = _dotted(node.func)
            if k == "work" and chain[0] in fresh and chain[-1] in _INPLACE:
                k = "fixed"  # a write of a tensor this function made: a factory's value
            if k == "reset":
                if id(node) in always:
                    resets.append(line)
                continue
            if k == "fixed" and not fixed_counts:
                continue
            if k in ("work", "fixed") or (k == "self-work" and follow is None):
                found.append((line, Finding(owner, src.file, line, what)))
            elif k in ("self", "self-work", "free") and follow is not None:
                inner = follow(what if k in ("self", "free") else chain[-1])
                if inner:
                    found.append((line, Finding(
                        owner, src.file, line, f"calls {_text(chain)}(...), which at "
                        f"{inner[0].file}:{inner[0].line} {inner[0].what}")))
        else:
            for target in _targets(node):
                what = _data_write(target)
                if what:
                    line = src.line(node)
                    found.append((line, Finding(owner, src.file, line, what)))
    last_reset = max(resets, default=0)
    # what ran before the re-run's own reset was overwritten by it, eagerly too
    return [f for line, f in sorted(found, key=lambda x: x[0]) if line > last_reset]


_NEW_TENSORS = _FIXED_FACTORIES | _RANDOM_FACTORIES | {"empty", "empty_like", "new_empty",
                                                      "clone", "Tensor"}


def _fresh_locals(fn: ast.AST) -> set[str]:
    """Local names only ever bound to a tensor the function makes (``mix = torch.zeros(n)``):
    writing them in place makes a value, as a factory does."""
    fresh: set[str] = set()
    other: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    chain = _dotted(node.value.func) if isinstance(node.value, ast.Call) else []
                    made = bool(chain) and chain[-1] in _NEW_TENSORS and (
                        chain[0] == "torch" or chain[-1] in ("clone",) or
                        chain[-1].startswith("new_"))
                    (fresh if made else other).add(t.id)
        elif isinstance(node, (ast.For, ast.comprehension)):
            for t in ast.walk(node.target):
                if isinstance(t, ast.Name):
                    other.add(t.id)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.NamedExpr)) and isinstance(
                node.target, ast.Name):
            other.add(node.target.id)
        elif isinstance(node, ast.arguments):
            other.update(a.arg for a in (*node.posonlyargs, *node.args, *node.kwonlyargs))
    return fresh - other


def _top_level(body: list[ast.stmt]) -> Iterable[ast.stmt]:
    """Statements that always run: the body, and the bodies of ``with`` blocks in it."""
    for s in body:
        yield s
        if isinstance(s, (ast.With, ast.AsyncWith)):
            yield from _top_level(s.body)


#: per module class: its findings (cached; classes are not expected to change)
_CACHE: dict[type, tuple[Finding, ...]] = {}


def scan_class(cls: type) -> tuple[Finding, ...]:
    """The init work in the construction code of module class ``cls`` (its MRO's
    ``__init__`` and the methods they call on ``self``, one level deep), torch's classes
    skipped. Cached per class."""
    if cls in _CACHE:
        return _CACHE[cls]
    reset = _reset_name(cls)
    fixed_counts = reset is not None
    findings: list[Finding] = []
    for klass in cls.__mro__:
        if klass is object or _is_torch(klass) or "__init__" not in klass.__dict__:
            continue
        owner = f"{klass.__module__}.{klass.__qualname__}"
        init = _function(klass, "__init__")
        src = _source(init)
        if src is None:
            code = getattr(init, "__code__", None)
            findings.append(Finding(owner, getattr(code, "co_filename", "?"),
                                    getattr(code, "co_firstlineno", 0),
                                    "source of __init__ unavailable: cannot be checked"))
            continue

        def follow(name) -> list[Finding] | None:
            if not isinstance(name, str):  # a plain function called from __init__
                return _scan_free(name, reset, fixed_counts)
            for k in cls.__mro__:  # the method the instance would call
                if name in k.__dict__:
                    inner = None if _is_torch(k) else _source(_function(k, name))
                    return None if inner is None else _scan_function(
                        inner, f"{k.__module__}.{k.__qualname__}.{name}", reset, fixed_counts)
            return None

        findings += _scan_function(src, owner, reset, fixed_counts, follow)
    got = _CACHE[cls] = tuple(findings)
    return got


_FREE: dict[tuple, tuple[Finding, ...]] = {}


def _scan_free(fn: types.FunctionType, reset: str | None, fixed_counts: bool) -> list[Finding]:
    """Init work in a plain function called from ``__init__`` (one level: its own calls
    are judged by name, not followed). Cached per function."""
    key = (fn.__code__, reset, fixed_counts)
    if key not in _FREE:
        inner = _source(fn)
        _FREE[key] = () if inner is None else tuple(
            _scan_function(inner, f"{fn.__module__}.{fn.__qualname__}", reset, fixed_counts))
    return list(_FREE[key])


def _rewrites_every_parameter(module: nn.Module, recipe) -> bool:
    """Whether ``recipe``'s plan on ``module`` writes every parameter (a dry plan: any
    error or warning is left to the real one, after the model's init)."""
    import warnings

    from fastinit import recipes

    params = dict(module.named_parameters())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plan = recipes.resolve(recipe, module).plan(module, params)
    except Exception:  # noqa: BLE001 - materialize raises it again, at its place
        return False
    if plan.has_procedures:
        return False
    written = {id(t) for t in plan.targets().values()}
    return all(id(p) in written for p in params.values())


def _trusted(module: nn.Module) -> set[int]:
    """ids of the modules whose init the model's own entry point re-does (the ones
    ``run_model_init`` calls): Hugging Face models and everything in them; else the root
    module when it has an ``init_weights()``; PEFT LoRA layers with data-free inits."""
    from fastinit.modelinit import outermost_hf_models

    trusted: set[int] = set()
    hf = outermost_hf_models(module)
    if hf:
        trusted = {id(m) for model in hf for m in model.modules()}
    elif callable(getattr(module, "init_weights", None)):
        # the root's own construction; what its children's __init__ did is checked (timm's
        # LeViT: init_weights() only resets, its ConvNorm zeroed a BatchNorm weight)
        trusted = {id(module)}
    # PEFT's LoRA layers: run_model_init calls reset_lora_parameters for the data-free inits
    configs = next((m.peft_config for m in module.modules()
                    if isinstance(getattr(m, "peft_config", None), dict)), None)
    if configs and all(_data_free(getattr(c, "init_lora_weights", True))
                       for c in configs.values()):
        trusted |= {id(m) for m in module.modules()
                    if callable(getattr(m, "reset_lora_parameters", None))}
    return trusted


def _data_free(init) -> bool:
    return init is True or init is False or init == "gaussian"


def ambiguous_ties(module: nn.Module) -> list[list[str]]:
    """Tensors held by two or more modules that each reset them (``head.weight =
    emb.weight`` in a plain model): the names of each, the holders' first names.

    Eager construction resets each module's own tensors before the tie, so the shared
    tensor keeps the values of the module that made it; a meta build keeps no trace of
    which one that was, and re-running the resets leaves the last one's values. Not
    ambiguous: a model with a root ``init_weights()`` (``run_model_init`` runs it after
    every reset: its writes decide, as they do eagerly) and holders whose init the model's
    own entry point re-does (``trusted``, see :func:`_trusted`: Hugging Face's ties are
    undone while its init runs)."""
    if callable(getattr(module, "init_weights", None)):
        return []
    trusted = _trusted(module)
    holders: dict[int, list[tuple[str, int]]] = {}  # id(tensor) -> [(name, id(module))]
    for prefix, m in module.named_modules():
        if id(m) in trusted or not callable(
                getattr(m, "reset_parameters", None) or getattr(m, "_reset_parameters", None)):
            continue
        for attr, t in (*m._parameters.items(), *m._buffers.items()):
            if t is None:
                continue
            held = holders.setdefault(id(t), [])
            if all(owner != id(m) for _, owner in held):
                held.append((f"{prefix}.{attr}" if prefix else attr, id(m)))
    return [[name for name, _ in held] for held in holders.values() if len(held) > 1]


def scan(module: nn.Module) -> list[Finding]:
    """Every statement of init work in the construction code of ``module``'s modules that
    re-running their init code (a plain meta build's ``materialize``) cannot redo - the
    first one per class. Empty when the model's own entry point re-does everything."""
    trusted = _trusted(module)
    out: dict[str, Finding] = {}
    for m in module.modules():
        if id(m) not in trusted:
            for f in scan_class(type(m)):  # cached per class
                out.setdefault(f.cls, f)
    return list(out.values())


def check(module: nn.Module, recipe=None) -> None:
    """Raise :class:`LostInitError` if ``module`` (built on plain meta) has modules whose
    ``__init__`` does init work that ``materialize`` cannot redo, naming each class, the
    file and line, and the fix. A ``recipe`` (as ``materialize`` takes it) that rewrites
    every parameter of the model makes the model's own init moot: then nothing is refused
    (``materialize(resnet_on_meta, recipe=recipes.resnet(zero_init_residual=True))``)."""
    found = scan(module)
    ties = ambiguous_ties(module)
    if (not found and not ties) or (
            recipe is not None and _rewrites_every_parameter(module, recipe)):
        return
    if ties and not found:
        listed = "; ".join(" = ".join(names) for names in ties[:8])
        raise LostInitError(
            "materialize: this model was built under torch.device('meta') and shares tensors "
            f"between modules whose reset_parameters() each write them: {listed}. Eager "
            "construction gives a shared tensor the values of the module that made it (the "
            "other's reset wrote the tensor the tie replaced); a meta build does not record "
            "which module that was, and re-running the resets would leave the last one's "
            "values. Build the model under fastinit.empty_init() instead (its construction "
            "is recorded and replayed exactly), give the model an init_weights() that writes "
            "the shared tensors, or pass accept_reset_defaults=True to materialize to accept "
            "the resets run in module order")
    listed = "; ".join(str(f) for f in found[:8])
    more = f"; and {len(found) - 8} more" if len(found) > 8 else ""
    raise LostInitError(
        "materialize: this model was built under torch.device('meta'), so its construction "
        "was not recorded, and these classes' __init__ does init work that re-running the "
        f"model's init code (reset_parameters) cannot redo: {listed}{more}. Build the model "
        "under fastinit.empty_init() instead (its construction is recorded and replayed "
        "exactly), or pass accept_reset_defaults=True to materialize to get the modules' "
        "reset_parameters() defaults instead of that init")
