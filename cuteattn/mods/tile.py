"""Mods applied to a score tile held in registers, for every kernel that holds one.

A tile is indexed (row, col) through `coords`, each register's position in the tile; row0 and col0 place
the tile in the sequences. The forward holds queries on rows (`transposed=False`), the backward keys on
rows. Indices past the sequence ends are clamped to the last position before a mask_mod sees them; a
score_mod, and a mask_mod that reads the positions only through q_idx - kv_idx, see the padding's own indices,
which is cheaper (kv_idx - q_idx stays one offset per tile), and their reads of captured tensors are clamped
into them. The kernels mask those scores after the mod either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cutlass
import cutlass.cute as cute
from cutlass import Float32, Int32

from cuteattn.mods import lower, trace
from cuteattn.mods.ops import cast, kind_of


@dataclass(frozen=True)
class ModArgs:
    """What the mods read at run time: the scale that turns held scores into the mods' units, the captured
    tensors (score_mod's, then mask_mod's), the fp32 gradients of score_mod's captured tensors that require
    grad (the backward), and where the CTA works."""

    score_scale: Float32
    tensors: Optional[list]  # None: no captured tensors
    grads: Optional[list]
    batch: Int32
    seqlen_q: Int32
    seqlen_k: Int32
    table: Optional["DifferenceTable"] = None  # the warpgroup's, where the kernel gives one

    def place(self, head, query0, key0, transposed: bool = False) -> "TilePlace":
        return TilePlace(self.batch, head, query0, key0, self.seqlen_q, self.seqlen_k, transposed, self.table)

    def split(self, score_mod) -> tuple:
        """(score_mod's tensors, mask_mod's tensors)."""
        if self.tensors is None:
            return [], []
        n = len(score_mod.captured) if score_mod is not None else 0
        return self.tensors[:n], self.tensors[n:]


@dataclass(frozen=True)
class TilePlace:
    """Where a score tile sits: batch, query head, and the first query and key it holds."""

    batch: Int32
    head: Int32
    query0: Int32
    key0: Int32
    seqlen_q: Int32
    seqlen_k: Int32
    transposed: bool = False  # keys on rows, queries on columns
    table: Optional["DifferenceTable"] = None


INT32_MAX = 2**31 - 1
THREADS = 128  # a warpgroup


@dataclass(frozen=True)
class DifferenceTable:
    """A warpgroup's shared memory for a score_mod that reads the positions only through q_idx - kv_idx: the
    values of `difference_frontier` are evaluated once per difference that the warpgroup's tile spans, a few
    per thread, rather than once per distinct difference in every thread; each thread then reads its scores'
    entries at constant offsets from its own base."""

    values: cute.Tensor  # (entries, frontier nodes), fp32: a consumer's slice of `table_shape`
    thread: Int32  # the thread's index in the warpgroup
    barrier: int  # a named barrier of the warpgroup's threads
    keys: int  # the tile's extent in keys


NO_TABLE = (1, 1, 1)  # the shape a kernel allocates without a table: one unused float


def table_shape(traced, queries: int, keys: int, consumers: int) -> tuple:
    """(entries, values, consumers) of the `DifferenceTable`s of a score_mod (None: no mod) over tiles of
    `queries` by `keys`, one per consumer warpgroup; NO_TABLE where it has none. The entries are the differences
    a tile spans, padded to a whole number per thread."""
    frontier = difference_frontier(traced) if traced is not None else []
    if not frontier:
        return NO_TABLE
    return -(-(queries + keys - 1) // THREADS) * THREADS, len(frontier), consumers


def difference_table(values: cute.Tensor, wg, thread, barrier: int, keys: int) -> Optional[DifferenceTable]:
    """Consumer `wg`'s table, from the kernel's shared memory shaped by `table_shape`; None under NO_TABLE."""
    if values.shape == NO_TABLE:
        return None
    return DifferenceTable(values[None, None, wg], thread, barrier, keys)


def difference_frontier(traced) -> list:
    """What a `DifferenceTable` holds: the nodes of a score_mod's graph that depend on the positions (through
    q_idx - kv_idx only), not on the score, and that the graph returns or a node reading the score uses. Empty
    where the positions are read otherwise, there is nothing to hold, or a value is not a float."""
    gm = traced.graph
    difference = trace.position_difference(gm, 1) if traced.kind == "score_mod" else None
    if difference is None:
        return []
    score = next(n for n in gm.graph.nodes if n.op == "placeholder")
    positional, reads_score = {difference}, {score}
    for node in gm.graph.nodes:
        if any(i in positional for i in node.all_input_nodes):
            positional.add(node)
        if any(i in reads_score for i in node.all_input_nodes):
            reads_score.add(node)
    needed, outputs = trace.needed_by(trace.outputs_of(gm)), trace.outputs_of(gm)
    frontier = [n for n in gm.graph.nodes if n in needed and n in positional and n not in reads_score
                and (n in outputs or any(u in reads_score and u in needed for u in n.users))]
    return frontier if all(kind_of(n.meta["val"].dtype) is Float32 for n in frontier) else []


def _as_int32(coordinate):
    # Coordinate and thread-index arithmetic stays a CuTe int tuple, whose // truncates: a min with INT32_MAX
    # makes it a plain Int32 (whose // floors, as torch's does) and folds away.
    return cutlass.min(coordinate, INT32_MAX)


def _indices(traced, place: TilePlace, coords, r, c):
    row, col = coords[r, 0][0], coords[0, c][1]
    query, key = (col, row) if place.transposed else (row, col)
    # A score_mod sees the padding's own positions (its scores are masked after it; an index into a captured
    # tensor is clamped into the tensor where it is used), so q_idx - kv_idx is one offset per tile and a table
    # read at it is loaded once per distinct offset; so for a mask_mod that reads the positions only through
    # q_idx - kv_idx (the comparisons of a sliding window, `trace._compare_by_difference`). Other mask mods keep
    # the clamps: without them the backward's sliding window, evaluated per score, spilled (0 -> 20 lines).
    if traced.kind == "score_mod" or _by_difference(traced):
        return _as_int32(place.query0 + query), _as_int32(place.key0 + key)
    return (cutlass.min(place.query0 + query, place.seqlen_q - 1),
            cutlass.min(place.key0 + key, place.seqlen_k - 1))


def _by_difference(traced) -> bool:
    """Whether a mod's graph reads q_idx and kv_idx only through their difference."""
    return trace.position_difference(traced.graph, 1 if traced.kind == "score_mod" else 0) is not None


def _line_values(gm, traced, tensors, s, coords, place: TilePlace, lead: int, trail: int):
    """Per row and per column of the tile, the nodes of `gm` that need only that line's index (with b and
    h), evaluated once for the line: a table read at doc[b, q_idx] is loaded once per row, not per score.
    `lead` and `trail` count the graph's inputs before b and after kv_idx (the score, the grad)."""
    def known(q_idx, kv_idx):
        return lower.hoist(gm, traced, [None] * lead + [place.batch, place.head, q_idx, kv_idx] + [None] * trail,
                           tensors)

    rows, cols = [], []
    for r in range(cute.size(s, mode=[0])):
        q_idx, kv_idx = _indices(traced, place, coords, r, 0)
        rows.append(known(None, kv_idx) if place.transposed else known(q_idx, None))
    for c in range(cute.size(s, mode=[1])):
        q_idx, kv_idx = _indices(traced, place, coords, 0, c)
        cols.append(known(q_idx, None) if place.transposed else known(None, kv_idx))
    return rows, cols


def _fill_table(gm, traced, tensors, place: TilePlace, difference, frontier: list, per_head: dict):
    """Evaluate `frontier` for each `difference` (the graph's q_idx - kv_idx node) of the tile into the
    warpgroup's table."""
    table = place.table
    q_idx = [n for n in gm.graph.nodes if n.op == "placeholder"][3]
    inputs = [None, place.batch, place.head, None, None]
    cute.arch.barrier(barrier_id=table.barrier, number_of_threads=THREADS)  # the last tile's entries are read
    for i in range(cute.size(table.values, mode=[0]) // THREADS):
        entry = table.thread + i * THREADS
        q_minus_kv = _as_int32(place.query0 - place.key0 + entry - (table.keys - 1))
        known = {**per_head, difference: q_minus_kv if difference.args[0] is q_idx else -q_minus_kv}
        values = lower.hoist(gm, traced, inputs, tensors, known)
        for j, node in enumerate(frontier):
            table.values[entry, j] = cast(values[node], Float32)
    cute.arch.barrier(barrier_id=table.barrier, number_of_threads=THREADS)


def _hoisted(gm, traced, tensors, s, coords, place: TilePlace, lead: int, trail: int):
    """known(r, c): the nodes of `gm` evaluated ahead for score (r, c) of the tile. Per line (`_line_values`),
    or, for a score_mod that reads q_idx and kv_idx only through their difference, once per distinct
    difference: a thread's scores whose coordinates differ by the same constant offset in the wgmma layout
    (`crd2idx` of the register) share one evaluation (the compiler does not regroup `(a + c1) - (b + c2)` to find
    equal ones), read from the warpgroup's `DifferenceTable` where the kernel gives one."""
    difference = trace.position_difference(gm, lead)
    if difference is None:
        rows, cols = _line_values(gm, traced, tensors, s, coords, place, lead, trail)
        return lambda r, c: {**rows[r], **cols[c]}

    def inputs(q_idx, kv_idx):
        return [None] * lead + [place.batch, place.head, q_idx, kv_idx] + [None] * trail

    def query_minus_key(row, col):
        return col - row if place.transposed else row - col

    per_head = lower.hoist(gm, traced, inputs(None, None), tensors)
    frontier = difference_frontier(traced) if place.table is not None and gm is traced.graph else []
    if frontier:
        _fill_table(gm, traced, tensors, place, difference, frontier, per_head)
        base = _as_int32(query_minus_key(*coords[0, 0])) + place.table.keys - 1  # this thread's entry of (0, 0)
    by_offset = {}

    def known(r, c):
        offset = query_minus_key(*cute.crd2idx((r, c), coords.layout))
        if offset not in by_offset:
            if frontier:
                by_offset[offset] = {n: place.table.values[base + offset, j] for j, n in enumerate(frontier)}
            else:
                by_offset[offset] = lower.hoist(gm, traced, inputs(*_indices(traced, place, coords, r, c)), tensors,
                                                per_head)
        return by_offset[offset]

    return known


def score_mod_prologue(traced, tensors, s: cute.Tensor, coords: cute.Tensor, place: TilePlace) -> list:
    """Per score of the tile, the part of score_mod that does not read the score (a table entry, say),
    evaluated now: called before waiting for the scores, its loads overlap the GEMM. Reads only s's shape."""
    known = _hoisted(traced.graph, traced, tensors, s, coords, place, 1, 0)
    prologue = []
    for r in range(cute.size(s, mode=[0])):
        for c in range(cute.size(s, mode=[1])):
            q_idx, kv_idx = _indices(traced, place, coords, r, c)
            prologue.append(lower.hoist(traced.graph, traced, [None, place.batch, place.head, q_idx, kv_idx],
                                        tensors, known(r, c)))
    return prologue


@cute.jit
def apply_score_mod(traced: cutlass.Constexpr, tensors, s: cute.Tensor, coords: cute.Tensor, place: TilePlace,
                    score_scale: Float32, prologue: list):
    """s = score_mod(s * score_scale, ...) in place: the mod sees scores in the units of q.k * softmax_scale.
    `prologue`: what `score_mod_prologue` evaluated ahead for this tile."""
    cols = cute.size(s, mode=[1])
    for r in cutlass.range_constexpr(cute.size(s, mode=[0])):
        for c in cutlass.range_constexpr(cols):
            q_idx, kv_idx = _indices(traced, place, coords, r, c)
            s[r, c] = lower.apply_score_mod(traced, tensors, s[r, c] * score_scale, place.batch, place.head, q_idx,
                                            kv_idx, prologue[r * cols + c])


@cute.jit
def score_mod_with_derivative(traced: cutlass.Constexpr, tensors, s: cute.Tensor, deriv: cute.Tensor,
                              coords: cute.Tensor, place: TilePlace, score_scale: Float32,
                              chain: cutlass.Constexpr = False, scores: cute.Tensor = None,
                              with_derivative: cutlass.Constexpr = True):
    """`apply_score_mod`, with d new_score / d score into `deriv` (a register tensor of s's shape), times
    what `deriv` holds with `chain`; the scores the mod saw into `scores` if given. Without
    `with_derivative` (it reads no score: `times_derivative` applies it later) `deriv` is left alone."""
    known = _hoisted(traced.graph, traced, tensors, s, coords, place, 1, 0)
    derivative = with_derivative and not traced.score_grad_is_identity
    if cutlass.const_expr(derivative):
        grad_known = _hoisted(traced.grad_graph, traced, tensors, s, coords, place, 1, 1)
    for r in cutlass.range_constexpr(cute.size(s, mode=[0])):
        for c in cutlass.range_constexpr(cute.size(s, mode=[1])):
            q_idx, kv_idx = _indices(traced, place, coords, r, c)
            score = s[r, c] * score_scale
            if cutlass.const_expr(scores is not None):
                scores[r, c] = score.to(scores.element_type)
            if cutlass.const_expr(derivative):
                d = lower.score_mod_derivative(traced, tensors, score, place.batch, place.head, q_idx, kv_idx,
                                               grad_known(r, c))
                if cutlass.const_expr(chain):
                    d = d * deriv[r, c].to(Float32)
                deriv[r, c] = d.to(deriv.element_type)
            s[r, c] = lower.apply_score_mod(traced, tensors, score, place.batch, place.head, q_idx, kv_idx,
                                            known(r, c))


@cute.jit
def times_derivative(traced: cutlass.Constexpr, tensors, ds: cute.Tensor, coords: cute.Tensor, place: TilePlace):
    """ds *= d new_score / d score, for a score_mod whose derivative reads no score (`scale[h]`, say): computed
    here from the indices rather than kept in registers from the scores' pass."""
    known = _hoisted(traced.grad_graph, traced, tensors, ds, coords, place, 1, 1)
    for r in cutlass.range_constexpr(cute.size(ds, mode=[0])):
        for c in cutlass.range_constexpr(cute.size(ds, mode=[1])):
            q_idx, kv_idx = _indices(traced, place, coords, r, c)
            ds[r, c] = ds[r, c] * lower.score_mod_derivative(traced, tensors, Float32(0.0), place.batch, place.head,
                                                             q_idx, kv_idx, known(r, c))


@cute.jit
def add_captured_grads(traced: cutlass.Constexpr, tensors, grads, dmod: cute.Tensor, scores: cute.Tensor,
                       coords: cute.Tensor, place: TilePlace):
    """Add d loss / d captured tensor into `grads` (fp32, atomically): dmod = d loss / d new_score per score,
    `scores` what the mod saw (or None when the gradients do not read it)."""
    for r in cutlass.range_constexpr(cute.size(dmod, mode=[0])):
        for c in cutlass.range_constexpr(cute.size(dmod, mode=[1])):
            q_idx, kv_idx = _indices(traced, place, coords, r, c)
            score = scores[r, c].to(Float32) if cutlass.const_expr(scores is not None) else Float32(0.0)
            if dmod[r, c] != Float32(0.0):  # masked scores add nothing: skip their atomics
                lower.add_captured_grads(traced, tensors, grads, score, place.batch, place.head, q_idx, kv_idx,
                                         dmod[r, c])


@cute.jit
def apply_mask_mod(traced: cutlass.Constexpr, tensors, s: cute.Tensor, coords: cute.Tensor, place: TilePlace):
    """Scores whose key mask_mod hides become -inf."""
    known = _hoisted(traced.graph, traced, tensors, s, coords, place, 0, 0)
    for r in cutlass.range_constexpr(cute.size(s, mode=[0])):
        for c in cutlass.range_constexpr(cute.size(s, mode=[1])):
            q_idx, kv_idx = _indices(traced, place, coords, r, c)
            visible = lower.apply_mask_mod(traced, tensors, place.batch, place.head, q_idx, kv_idx, known(r, c))
            s[r, c] = Float32(cutlass.select_(visible, s[r, c], -Float32.inf))
