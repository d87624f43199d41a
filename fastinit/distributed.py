"""Sharded tensors: which global elements a rank holds, and where they live in memory.

A ``torch.distributed.tensor.DTensor`` is a logical (global) tensor of which each rank
holds a local tensor. fastinit fills the local tensor with the values of the global
elements it holds, so the gathered result equals the single-process fill bit for bit,
with no communication: the map from local to global indices is computed here from the
mesh shape, this rank's mesh coordinate and the placements, exactly as
``torch.distributed.tensor`` defines them.

The map, per tensor dimension
-----------------------------
Each tensor dimension starts as one run ``[0, n)`` of global positions. Placements are
applied left to right (mesh dimension 0 first), as torch does:

* ``Shard(d)`` on a mesh dimension of size ``k`` at coordinate ``c`` keeps local
  positions ``[min(L, c * ceil(L / k)), min(L, (c + 1) * ceil(L / k)))`` of dimension
  ``d``, where ``L`` is its current local size (``torch.chunk``'s rule: uneven shards,
  empty shards on the last coordinates);
* ``_StridedShard(d, split_factor=f)`` (FSDP2 over tensor parallelism on the same
  dimension) cuts the current ``L`` positions into ``f`` chunks, each chunk into ``k``
  chunks, and keeps chunk ``c`` of each, concatenated;
* ``Replicate()`` keeps everything (every rank on that mesh dimension holds the same
  elements, so it writes the same values: no broadcast is needed);
* ``Partial(...)`` is refused: the local tensor is not a part of the global value but an
  addend of it, and a fill cannot choose addends.

A dimension's local positions thus map to a short list of runs of consecutive global
positions (one run for ``Shard``, ``f`` runs for ``_StridedShard``); a block of local
memory in which every dimension is one run (or an arithmetic sequence of equal runs) is
a handful of :class:`~fastinit.layout.Segment` s. Nothing is gathered, scattered or
allocated at full size.

:func:`local_plan` is the entry point: ``fastinit.fill.plan`` calls it for
every DTensor, and a grouped fill of many parameters (``fastinit.materialize``) turns
each ``(local, segments)`` pair into one ``backends.FillEntry``. It reads metadata only,
so it works on meta local tensors (plan before allocating).

Fills that are not a per-element function of the global index use helpers:
:func:`index_put_global_` writes values at given global positions (``eye_``, ``dirac_``,
the zeros of ``sparse_``) with no full-size temporary; :func:`copy_from_full_` keeps the
local part of a tensor every rank computed whole (``orthogonal_``: a QR of the whole
matrix, the same bits on every rank, still without communication), and
:func:`fill_full_then_shard` does both steps for any fill of a plain tensor.
"""
from __future__ import annotations

import functools
import itertools
from typing import Callable, NamedTuple, Sequence

import torch

from fastinit.layout import Segment, block_segments, contiguous_strides

__all__ = [
    "is_dtensor",
    "local_tensor",
    "ShardLayout",
    "local_plan",
    "shard_layout",
    "shard_layout_of",
    "layout_segments",
    "copy_segments_from_full",
    "copy_from_full_",
    "fill_full_then_shard",
    "global_positions",
    "index_put_global_",
    "unplaced_shard_axes",
    "refuse_unplaced_shard",
]

#: One run of a dimension's local-to-global map: ``length`` consecutive global
#: positions starting at ``start``, at consecutive local positions.
Run = tuple[int, int]  # (global start, length)


class ShardLayout(NamedTuple):
    """The global positions a rank holds, per tensor dimension.

    ``runs[d]`` lists, in local order, runs ``(global_start, length)`` of consecutive
    global positions along dimension ``d``; local position ``i`` of dimension ``d`` is
    the ``i``-th position of the concatenated runs. The local element at local index
    ``(i_0, ..., i_{n-1})`` is the global element at ``(g_0(i_0), ..., g_{n-1}(i_{n-1}))``.
    """

    global_shape: tuple[int, ...]
    runs: tuple[tuple[Run, ...], ...]

    @property
    def local_shape(self) -> tuple[int, ...]:
        return tuple(sum(n for _, n in r) for r in self.runs)

    def global_index(self, dim: int) -> list[int]:
        """The global positions of dimension ``dim``, in local order (for tests)."""
        return [g for s, n in self.runs[dim] for g in range(s, s + n)]


def is_dtensor(t: object) -> bool:
    """Whether ``t`` is a ``torch.distributed.tensor.DTensor`` (without importing
    ``torch.distributed`` on machines or builds that never use it)."""
    return type(t).__name__ == "DTensor" and hasattr(t, "_local_tensor")


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """The tensor whose memory holds ``t``'s elements on this rank: a DTensor's local
    tensor, or ``t`` itself."""
    if type(t) in _NOT_DTENSOR:  # (every fill asks, several times: kept short)
        return t
    return t._local_tensor if is_dtensor(t) else t


#: tensor types that are not DTensors (``local_tensor``'s short path)
_NOT_DTENSOR = frozenset({torch.Tensor, torch.nn.Parameter})


def unplaced_shard_axes(t: torch.Tensor) -> list[str]:
    """The mesh axes (of more than one rank) along which a plain tensor holds a different
    part on every rank without saying which: torchtitan's ``spmd_backend="spmd_types"``
    keeps a sharded parameter as a plain local tensor typed *varying* (``V``) on the
    axes it is split over (routed experts ``[E / ep, ...]`` under expert parallelism), and
    records nowhere where the part lies in the whole tensor. Empty for everything else
    (DTensors, plain tensors, replicated or partial spmd_types tensors)."""
    types = getattr(t, "_local_type", None)  # spmd_types' annotation of a local tensor
    if not isinstance(types, dict):
        return []
    # every varying axis, but those that say they have one rank
    return [str(axis) for axis, kind in types.items() if getattr(kind, "name", None) == "V"
            and not (callable(getattr(axis, "size", None)) and axis.size() <= 1)]


def refuse_unplaced_shard(t: torch.Tensor) -> None:
    """Raise if a random draw would write ``t``, a part of a larger tensor whose place is
    not known (:func:`unplaced_shard_axes`): every rank would draw the same values for
    different parts, the silent wrong value fastinit exists to prevent.

    Raises:
        NotImplementedError: ``t`` is such a tensor.
    """
    axes = unplaced_shard_axes(t)
    if axes:
        raise NotImplementedError(
            f"fastinit: a random draw into a tensor of shape {tuple(t.shape)} that "
            "torchtitan's spmd_types backend keeps as a plain local tensor varying over "
            f"mesh axis {', '.join(axes)} (each rank holds its own part, e.g. its experts) "
            "without recording which part of the whole tensor this rank holds: fastinit "
            "would draw the same values on every rank. Use spmd_backend='partial_dtensor' "
            "or 'full_dtensor' (the parts are DTensors, drawn at their global offsets), or "
            "initialize this tensor before parallelizing the model")


# --- the map: placements -> runs ----------------------------------------------------------


def _slice_runs(runs: Sequence[Run], start: int, stop: int) -> list[Run]:
    """Local positions ``[start, stop)`` of a dimension given by ``runs``."""
    out: list[Run] = []
    pos = 0
    for g, n in runs:
        lo, hi = max(start, pos), min(stop, pos + n)
        if hi > lo:
            out.append((g + lo - pos, hi - lo))
        pos += n
    return out


def _chunk_bounds(size: int, chunks: int, index: int) -> tuple[int, int]:
    """Bounds of chunk ``index`` when ``torch.chunk`` cuts ``size`` into ``chunks``
    (missing chunks are empty, as DTensor pads its chunk list)."""
    step = -(-size // chunks)
    lo = min(size, step * index)
    return lo, min(size, lo + step)


def _merge(runs: Sequence[Run]) -> tuple[Run, ...]:
    out: list[Run] = []
    for g, n in runs:
        if out and out[-1][0] + out[-1][1] == g:
            out[-1] = (out[-1][0], out[-1][1] + n)
        elif n:
            out.append((g, n))
    return tuple(out)


def _placement_kind(p) -> tuple[int, int] | None:
    """(tensor dim, split factor) of a sharding placement (``Shard``: factor 1), None for
    ``Replicate``."""
    from torch.distributed.tensor.placement_types import Partial, Replicate, Shard

    try:
        from torch.distributed.tensor.placement_types import _StridedShard
    except ImportError:  # pragma: no cover - older torch
        _StridedShard = ()  # type: ignore[assignment]
    # _StridedShard is a Shard subclass in older torch only
    if isinstance(p, (Shard, _StridedShard)):
        return int(p.dim), int(getattr(p, "split_factor", 1))
    if isinstance(p, Replicate):
        return None
    if isinstance(p, Partial):
        raise ValueError(
            f"fastinit cannot fill a DTensor with a Partial placement ({p!r}): its local "
            "tensors are addends of the global value, not parts of it, and a fill cannot "
            "choose addends. Fill a Replicate (or sharded) DTensor and redistribute it, or "
            "fill before the tensor becomes partial."
        )
    raise NotImplementedError(f"fastinit does not know the DTensor placement {p!r}")


def shard_layout(global_shape: Sequence[int], mesh_shape: Sequence[int],
                 coordinate: Sequence[int], placements: Sequence) -> ShardLayout:
    """The :class:`ShardLayout` of the rank at ``coordinate`` of a mesh of ``mesh_shape``.

    Pure: needs no process group, so it can be evaluated for any rank (and is, in the
    tests, for every rank of many meshes).
    """
    global_shape = tuple(int(n) for n in global_shape)
    if len(placements) != len(mesh_shape) or len(coordinate) != len(mesh_shape):
        raise ValueError(
            f"{len(placements)} placements and a {len(coordinate)}-d coordinate for a "
            f"mesh of shape {tuple(mesh_shape)}"
        )
    return _shard_layout(global_shape, tuple(int(k) for k in mesh_shape),
                         tuple(int(c) for c in coordinate),
                         tuple(_placement_kind(p) for p in placements))


@functools.lru_cache(maxsize=4096)
def _shard_layout(global_shape: tuple[int, ...], mesh_shape: tuple[int, ...],
                  coordinate: tuple[int, ...],
                  kinds: tuple[tuple[int, int] | None, ...]) -> ShardLayout:
    ndim = len(global_shape)
    runs: list[tuple[Run, ...]] = [((0, n),) if n else () for n in global_shape]
    for k, c, kind in zip(mesh_shape, coordinate, kinds):
        if kind is None:  # replicated
            continue
        dim, factor = kind
        if not -ndim <= dim < ndim:
            raise ValueError(f"a placement shards dimension {dim} of a {ndim}-d tensor")
        dim %= ndim
        size = sum(n for _, n in runs[dim])
        kept: list[Run] = []
        for j in range(factor):  # chunk c of each of the factor chunks (Shard: one)
            f_lo, f_hi = _chunk_bounds(size, factor, j)
            lo, hi = _chunk_bounds(f_hi - f_lo, k, c)
            kept += _slice_runs(runs[dim], f_lo + lo, f_lo + hi)
        runs[dim] = _merge(kept)
    return ShardLayout(global_shape, tuple(runs))


def shard_layout_of(dt) -> ShardLayout | None:
    """The :class:`ShardLayout` of this rank's part of DTensor ``dt`` (``None`` when this
    rank is not part of its mesh). Reads only local metadata: no communication."""
    mesh = dt._spec.mesh
    coordinate = mesh.get_coordinate()
    if coordinate is None:
        return None
    return shard_layout(dt.shape, mesh.shape, coordinate, dt._spec.placements)


# --- runs -> segments ---------------------------------------------------------------------


class _Piece(NamedTuple):
    """``count`` runs of ``length`` positions: local ``l0 + r * length + j`` holds global
    ``g0 + r * g_step + j``."""

    l0: int
    g0: int
    length: int
    count: int
    g_step: int


def _pieces(runs: Sequence[Run]) -> list[_Piece]:
    """Group runs of equal length at a constant global step into one piece."""
    out: list[_Piece] = []
    pos = 0
    for g, n in runs:
        p = out[-1] if out else None
        step = g - (p.g0 + (p.count - 1) * p.g_step) if p else 0
        if p and n == p.length and (p.count == 1 or step == p.g_step) and step > 0:
            out[-1] = p._replace(count=p.count + 1, g_step=step)
        else:
            out.append(_Piece(pos, g, n, 1, 0))
        pos += n
    return out


def layout_segments(layout: ShardLayout, local_strides: Sequence[int]) -> list[Segment]:
    """Segments that fill a local tensor of strides ``local_strides`` holding ``layout``.

    Memory offsets are in elements from the local tensor's first element; global indices
    are row-major indices of the global tensor.
    """
    return list(_layout_segments(layout, tuple(int(s) for s in local_strides)))


@functools.lru_cache(maxsize=4096)
def _layout_segments(layout: ShardLayout, local_strides: tuple[int, ...]) -> tuple[Segment, ...]:
    gstrides = contiguous_strides(layout.global_shape)
    per_dim = [_pieces(r) for r in layout.runs]
    segs: list[Segment] = []
    for block in itertools.product(*per_dim):
        dims: list[tuple[int, int, int]] = []
        m_base = g_base = 0
        for p, ms, gs in zip(block, local_strides, gstrides):
            m_base += p.l0 * ms
            g_base += p.g0 * gs
            if p.count > 1:
                dims.append((p.count, p.length * ms, p.g_step * gs))
            dims.append((p.length, ms, gs))
        segs += block_segments(dims, m_base, g_base)
    return tuple(segs)


# --- DTensors -----------------------------------------------------------------------------


def local_plan(dt) -> tuple[torch.Tensor, list[Segment]]:
    """``(local tensor, segments)``: filling ``segments`` of the local tensor of DTensor
    ``dt`` with the stream of the global tensor writes exactly this rank's part of it.

    Reads metadata only (shape, placements, mesh coordinate, local strides): no
    communication, and it works on meta local tensors (to plan before allocating).
    Replicated mesh dimensions give every rank on them the same segments, hence the same
    values. Raises ``ValueError`` for ``Partial`` placements and when the local tensor's
    shape is not the one the placements define (a ``DTensor.from_local`` with a custom
    uneven split).
    """
    local = dt._local_tensor
    layout = shard_layout_of(dt)
    if layout is None:  # this rank holds nothing
        return local, []
    if tuple(local.shape) != layout.local_shape:
        raise ValueError(
            f"fastinit: the local tensor of this DTensor has shape {tuple(local.shape)}, "
            f"but placements {tuple(dt.placements)} of a {tuple(dt.shape)} tensor on mesh "
            f"{tuple(dt.device_mesh.shape)} at coordinate "
            f"{tuple(dt.device_mesh.get_coordinate())} give {layout.local_shape}; fastinit "
            "fills DTensors split by torch.chunk's rule (distribute_tensor, FSDP2, "
            "parallelize_module)"
        )
    return local, layout_segments(layout, local.stride())


def copy_segments_from_full(local: torch.Tensor, segs: Sequence[Segment],
                            full: torch.Tensor) -> None:
    """Copy the global elements ``segs`` name from ``full`` (the whole logical tensor,
    any strides, same device) into ``local``, one strided copy per segment."""
    flat = full.reshape(-1)
    base = local.storage_offset()
    for s in segs:
        dst = local.as_strided((s.n_rows, s.row_len), (s.m_row_stride, 1), base + s.m_base)
        src = flat.as_strided((s.n_rows, s.row_len), (s.g_row_stride, 1),
                              flat.storage_offset() + s.g_base)
        dst.copy_(src)


def copy_from_full_(dt, full: torch.Tensor) -> None:
    """Write this rank's part of ``full`` (a plain tensor of ``dt``'s global shape, the
    same on every rank) into DTensor ``dt``'s local tensor. No communication."""
    if tuple(full.shape) != tuple(dt.shape):
        raise ValueError(f"full tensor of shape {tuple(full.shape)} for a DTensor of shape "
                         f"{tuple(dt.shape)}")
    local, segs = local_plan(dt)
    if segs:
        with torch.no_grad():
            copy_segments_from_full(local, segs, full.to(device=local.device,
                                                         dtype=local.dtype))


def fill_full_then_shard(dt, fill_full: Callable[[torch.Tensor], object]) -> None:
    """Fill DTensor ``dt`` by filling the whole logical tensor on every rank.

    For fills that are not a per-element function of the global index (``orthogonal_``:
    a QR factorization of the whole matrix): ``fill_full`` receives a plain tensor of the
    global shape and dtype on the local device, fills it in place exactly as on a single
    process, and this rank copies out the part it holds. Every rank computes the same full tensor (same inputs, same
    device type), so the result equals a single-process fill without any communication,
    at the cost of one full-size temporary per rank.
    """
    local, _ = local_plan(dt)  # raises for Partial before any work
    full = torch.empty(tuple(dt.shape), dtype=dt.dtype, device=local.device)
    fill_full(full)
    copy_from_full_(dt, full)


def global_positions(dt) -> list[torch.Tensor]:
    """Per tensor dimension, the global positions this rank holds, in local order
    (int64 tensors on the local device; empty when this rank holds nothing)."""
    layout = shard_layout_of(dt)
    return [torch.tensor(layout.global_index(d) if layout else [], dtype=torch.int64,
                         device=dt._local_tensor.device) for d in range(len(dt.shape))]


def index_put_global_(dt, indices: Sequence[torch.Tensor], value: float) -> None:
    """``full[indices] = value`` for DTensor ``dt``, in global coordinates: each rank writes
    the listed elements it holds (``eye_``, ``dirac_``: a few ones at known positions).
    ``indices`` are 1-d integer tensors of equal length, one per dimension. No
    communication and no full-size temporary (one lookup table per dimension)."""
    if len(indices) != len(dt.shape) or not indices:
        raise ValueError(f"{len(indices)} index tensors for a {len(dt.shape)}-d DTensor")
    local, _ = local_plan(dt)  # validates the placements and the local shape
    if local.numel() == 0:
        return
    local_idx = []
    for d, (pos, idx) in enumerate(zip(global_positions(dt), indices)):
        lookup = torch.full((dt.shape[d],), -1, dtype=torch.int64, device=local.device)
        lookup[pos] = torch.arange(pos.numel(), device=local.device)
        local_idx.append(lookup[idx.to(device=local.device, dtype=torch.int64)])
    keep = functools.reduce(torch.logical_and, [li >= 0 for li in local_idx])
    with torch.no_grad():
        local.index_put_(tuple(li[keep] for li in local_idx),
                         torch.tensor(value, dtype=local.dtype, device=local.device))


# --- parts of a DTensor: writes land on the ranks that hold them ---------------------------


class GlobalPart(NamedTuple):
    """A basic-indexed part of a DTensor's global tensor, as this rank holds it: per global
    dimension, whether it is kept (False: an integer index) and the pieces this rank holds,
    ``(local start, local stop, global start)`` - consecutive in local positions."""

    dtensor: object
    kept: tuple[bool, ...]
    pieces: tuple[tuple[tuple[int, int, int], ...], ...]


def _part_box(shape: Sequence[int], name: str, args: tuple) -> tuple | None:
    """``(box, kept)`` of ``dt[index]`` / ``dt.select(d, i)`` / ``dt.narrow(d, s, n)``, or
    None for indexing that is not a box (steps, tensors, None)."""
    ndim = len(shape)
    box = [(0, int(n)) for n in shape]
    kept = [True] * ndim
    if name == "select" or name == "narrow":
        d = int(args[1]) % ndim
        start = int(args[2])
        start = start + shape[d] if start < 0 else start
        stop = start + (int(args[3]) if name == "narrow" else 1)
        if not 0 <= start <= stop <= shape[d]:
            return None
        box[d] = (start, stop)
        kept[d] = name == "narrow"
        return box, kept
    index = args[1] if isinstance(args[1], tuple) else (args[1],)
    if any(i is None for i in index) or sum(i is Ellipsis for i in index) > 1:
        return None
    if Ellipsis in index:
        at = index.index(Ellipsis)
        index = index[:at] + (slice(None),) * (ndim - len(index) + 1) + index[at + 1:]
    if len(index) > ndim:
        return None
    for d, i in enumerate(index):
        if isinstance(i, bool) or not isinstance(i, (int, slice)):
            return None
        if isinstance(i, int):
            j = i + shape[d] if i < 0 else i
            if not 0 <= j < shape[d]:
                return None
            box[d], kept[d] = (j, j + 1), False
        else:
            start, stop, step = i.indices(int(shape[d]))
            if step != 1:
                return None
            box[d] = (start, max(start, stop))
    return box, kept


def local_part(dt, name: str, args: tuple) -> torch.Tensor | None:
    """The memory this rank holds of ``dt[index]`` (``name`` ``"__getitem__"``),
    ``dt.select(d, i)`` or ``dt.narrow(d, s, n)``: a view of the local tensor, marked
    (attribute ``_fastinit_part``) with the :class:`GlobalPart` it is. A write to it writes
    exactly the elements of the part this rank holds - what a write to the part of the
    single-process tensor writes, rank by rank, with no communication. None when the
    indexing is not a box of integers and unit-step slices."""
    parsed = _part_box(dt.shape, name, args)
    layout = shard_layout_of(dt)
    if parsed is None or layout is None:
        return None
    box, kept = parsed
    view = dt._local_tensor
    pieces = []
    dim = 0
    for d, ((start, stop), keep) in enumerate(zip(box, kept)):
        mine = []
        pos = 0
        for g, n in layout.runs[d]:
            lo, hi = max(start, g), min(stop, g + n)
            if hi > lo:  # runs are consecutive in local positions: so are these pieces
                mine.append((pos + lo - g, pos + hi - g, lo))
            pos += n
        pieces.append(tuple(mine))
        a, b = (mine[0][0], mine[-1][1]) if mine else (0, 0)
        view = view.narrow(dim, a, b - a)
        if keep or not mine:  # a part this rank holds none of keeps the (empty) dimension
            dim += 1
        else:
            view = view.select(dim, 0)
    view._fastinit_part = GlobalPart(dt, tuple(kept), tuple(pieces))
    return view


def fill_part(view: torch.Tensor, params, key: int, stream: int, draw_round: int) -> None:
    """Fill the local ``view`` of a :class:`GlobalPart` with the DTensor's stream at the
    global indices it holds (in place, one fill per block of pieces; no communication)."""
    from fastinit import backends

    part: GlobalPart = view._fastinit_part
    gstrides = contiguous_strides(part.dtensor.shape)
    if any(not p for p in part.pieces):
        return
    full = view
    for d, keep in enumerate(part.kept):  # the part with every dimension, as held locally
        if not keep:
            full = full.unsqueeze(d)
    origin = [p[0][0] for p in part.pieces]
    for block in itertools.product(*part.pieces):
        target = full
        for d, ((lo, hi, _), o) in enumerate(zip(block, origin)):
            target = target.narrow(d, lo - o, hi - lo)
        offset = sum(g0 * g for (_, _, g0), g in zip(block, gstrides))
        dims = list(zip(target.shape, target.stride(), gstrides))
        backends.fill(target, block_segments(dims, 0, offset), params, key, stream, draw_round)
