"""Numba kernels of the transportation network simplex (Ahuja, Magnanti & Orlin, ch. 11).

Nodes 0..n-1 are sources (rows), n..n+m-1 sinks (columns). The basis is a spanning tree held
in flat arrays: ``parent``, a doubly linked child list (``first_child``, ``next_sib``,
``prev_sib``), ``depth``, ``flow`` (on the arc to the parent; every arc runs source -> sink, so
its direction follows from the node's kind) and the potentials ``pi`` (f = pi[:n], g = pi[n:]).
Potentials are recomputed from the tree (never shifted incrementally) so that a huge cost that
leaves the basis leaves no rounding trace behind. ``src`` is a dense cost matrix or an
on-the-fly cost source (see ``otsolve._costs.cost_at``); ``n, m`` are its shape.
"""
import numpy as np
from numba import njit, prange

from .._costs import cost_at, cost_row

OPTIMAL, MAX_ITER = 0, 1


@njit(cache=True, inline="always")
def _arc_cost(src, n, art, w, p):
    """Cost of the tree arc between node w and its parent p; ``art[w]`` for the artificial
    arc to the root n + m of a warm-started tree (``art`` is empty otherwise)."""
    if art.shape[0] > 0 and p == art.shape[0]:
        return art[w]
    if w < n:
        return cost_at(src, w, p - n)
    return cost_at(src, p, w - n)


@njit(cache=True, inline="always")
def _unlink(w, parent, first_child, next_sib, prev_sib):
    p = parent[w]
    if prev_sib[w] >= 0:
        next_sib[prev_sib[w]] = next_sib[w]
    else:
        first_child[p] = next_sib[w]
    if next_sib[w] >= 0:
        prev_sib[next_sib[w]] = prev_sib[w]


@njit(cache=True, inline="always")
def _link(w, p, parent, first_child, next_sib, prev_sib):
    parent[w] = p
    prev_sib[w] = -1
    next_sib[w] = first_child[p]
    if first_child[p] >= 0:
        prev_sib[first_child[p]] = w
    first_child[p] = w


@njit(cache=True)
def _relabel(top, src, n, art, parent, first_child, next_sib, pi, depth):
    """Recompute pi and depth over the subtree of ``top`` (not the root) in preorder:
    pi[w] = C(arc) - pi[parent[w]], which holds f_i + g_j = C_ij on every tree arc."""
    w = top
    while True:
        p = parent[w]
        pi[w] = _arc_cost(src, n, art, w, p) - pi[p]
        depth[w] = depth[p] + 1
        if first_child[w] >= 0:
            w = first_child[w]
            continue
        while w != top and next_sib[w] < 0:
            w = parent[w]
        if w == top:
            return
        w = next_sib[w]


@njit(cache=True)
def northwest_tree(src, a, b, row_order, col_order, parent, flow, first_child, next_sib, prev_sib,
                   pi, depth):
    """Fill a strongly feasible initial tree by the north-west corner rule over the given
    row and column orders, rooted at the first row. A degenerate (zero-flow) cell is only ever
    added on a move to the right, i.e. as an arc pointing away from the root."""
    n, m = a.shape[0], b.shape[0]
    parent[:] = -1
    first_child[:] = -1
    next_sib[:] = -1
    prev_sib[:] = -1
    root = row_order[0]
    i, j = 0, 0
    ra, rb = a[row_order[0]], b[col_order[0]]
    child = n + col_order[0]
    _link(child, root, parent, first_child, next_sib, prev_sib)
    while True:
        if j == m - 1:  # the last column takes what every remaining row has left
            x = ra
        elif i == n - 1:
            x = rb
        else:
            x = min(ra, rb)
        flow[child] = max(x, 0.0)
        if i == n - 1 and j == m - 1:
            break
        if j == m - 1 or (i < n - 1 and ra < rb):  # row exhausted first: move down
            rb -= x
            i += 1
            ra = a[row_order[i]]
            child = row_order[i]
            _link(child, n + col_order[j], parent, first_child, next_sib, prev_sib)
        else:  # column exhausted (or both, degenerate): move right
            ra -= x
            j += 1
            rb = b[col_order[j]]
            child = n + col_order[j]
            _link(child, row_order[i], parent, first_child, next_sib, prev_sib)
    pi[root] = 0.0
    depth[root] = 0
    flow[root] = 0.0
    no_art = np.empty(0)
    w = first_child[root]
    while w >= 0:
        _relabel(w, src, n, no_art, parent, first_child, next_sib, pi, depth)
        w = next_sib[w]
    return root


@njit(cache=True)
def _price_rows(src, pi, n, m, start_row, block_rows, tol):
    """Block search by whole rows, cyclically from ``start_row``: return the arc (i*m + j) of
    most negative reduced cost in the first block of ``block_rows`` rows that has one, or -1.
    An arc counts when C_ij - f_i - g_j < -tol * (|C_ij| + |f_i| + |g_j|). Whole rows keep the
    inner loop simple (about twice the speed of blocks that end mid-row)."""
    best, best_arc = 0.0, -1
    buf = np.empty(m)
    i = start_row
    for r in range(n):
        fi = pi[i]
        row = cost_row(src, i, buf)
        for j in range(m):
            gj = pi[n + j]
            c = row[j]
            rc = c - fi - gj
            if rc < best and -rc > tol * (abs(c) + abs(fi) + abs(gj)):
                best = rc
                best_arc = i * m + j
        i = i + 1 if i + 1 < n else 0
        if (r + 1) % block_rows == 0 and best_arc >= 0:
            return best_arc
    return best_arc


@njit(cache=True, inline="always")
def push_cycle(u, v, n, parent, depth, flow):
    """Send the most flow around the cycle that the entering arc u -> v closes in the tree;
    returns (delta, out, side): the leaving node by Cunningham's rule (the last blocking arc
    from the apex, so the tree stays strongly feasible and degenerate pivots cannot cycle) and
    whether it is on u's side (1) or v's (2)."""
    x, y = u, v
    while x != y:  # apex of the cycle
        if depth[x] > depth[y]:
            x = parent[x]
        elif depth[y] > depth[x]:
            y = parent[y]
        else:
            x, y = parent[x], parent[y]
    join = x
    # Flow runs join -> ... -> u -> v -> ... -> join. Strict "<" on u's side and "<=" on
    # v's side picks the last blocking arc in that orientation.
    delta, out, side = np.inf, -1, 0
    w = u
    while w != join:
        if w < n and flow[w] < delta:  # source (or its artificial arc): flow falls
            delta, out, side = flow[w], w, 1
        w = parent[w]
    w = v
    while w != join:
        if w >= n and flow[w] <= delta:  # sink: its arc comes from the parent, flow falls
            delta, out, side = flow[w], w, 2
        w = parent[w]
    if delta > 0.0:
        w = u
        while w != join:
            flow[w] += -delta if w < n else delta
            w = parent[w]
        w = v
        while w != join:
            flow[w] += delta if w < n else -delta
            w = parent[w]
    return delta, out, side


@njit(cache=True)
def network_simplex(src, n, m, art, root, parent, flow, first_child, next_sib, prev_sib, pi, depth,
                    block_rows, tol, max_iter):
    """Pivot until no arc prices out (OPTIMAL) or ``max_iter`` pivots (MAX_ITER, if >= 0).
    Leaving arc by Cunningham's rule (last blocking arc from the apex), so the tree stays
    strongly feasible and degenerate pivots cannot cycle. Returns (status, pivots)."""
    cursor = 0
    pivots = 0
    while True:
        arc = _price_rows(src, pi, n, m, cursor, block_rows, tol)
        if arc < 0:
            return OPTIMAL, pivots
        if pivots == max_iter:
            return MAX_ITER, pivots
        cursor = arc // m + 1 if arc // m + 1 < n else 0
        u, v = arc // m, n + arc % m
        delta, out, side = push_cycle(u, v, n, parent, depth, flow)
        q, p = (u, v) if side == 1 else (v, u)
        # Re-hang the path q -> out below p, reversing its arcs; each arc keeps its flow.
        prev, w, carried = p, q, delta
        while True:
            nxt = parent[w]
            old = flow[w]
            _unlink(w, parent, first_child, next_sib, prev_sib)
            _link(w, prev, parent, first_child, next_sib, prev_sib)
            flow[w] = carried
            if w == out:
                break
            carried, prev, w = old, w, nxt
        _relabel(q, src, n, art, parent, first_child, next_sib, pi, depth)
        pivots += 1


@njit(cache=True)
def tree_flows(root, a, b, parent, first_child, next_sib, flow):
    """Recompute every tree flow from the marginals (flow of an arc = net supply of the
    subtree below it), so the plan's marginals hold to rounding whatever the pivots did."""
    n = a.shape[0]
    total = parent.shape[0]
    order = np.empty(total, np.int64)
    k = 0
    w = root
    while True:  # preorder of the whole tree
        order[k] = w
        k += 1
        if first_child[w] >= 0:
            w = first_child[w]
            continue
        while w != root and next_sib[w] < 0:
            w = parent[w]
        if w == root:
            break
        w = next_sib[w]
    supply = np.zeros(total)  # a warm-started tree has one more node, the root, supply 0
    supply[:n] = a
    supply[n:n + b.shape[0]] = -b
    for t in range(k - 1, 0, -1):
        w = order[t]
        supply[parent[w]] += supply[w]
        flow[w] = max(supply[w] if w < n else -supply[w], 0.0)
    flow[root] = 0.0


@njit(cache=True)
def dual_violation(src, f, g):
    """max_ij (f_i + g_j - C_ij), at least 0. Serial: thread start-up would dominate the
    small problems of GAN minibatches and batches."""
    worst = 0.0
    buf = np.empty(g.shape[0])
    for i in range(f.shape[0]):
        row = cost_row(src, i, buf)
        for j in range(g.shape[0]):
            worst = max(worst, f[i] + g[j] - row[j])
    return worst


@njit(cache=True)
def tightest_potentials(src, f, g, row_alive, col_alive):
    """Potentials of removed (zero-weight) rows, then columns, as the tightest feasible values:
    f_i = min_{alive j} C_ij - g_j, then g_j = min_i C_ij - f_i."""
    n, m = f.shape[0], g.shape[0]
    for i in range(n):
        if not row_alive[i]:
            best = np.inf
            for j in range(m):
                if col_alive[j]:
                    best = min(best, cost_at(src, i, j) - g[j])
            f[i] = best
    for j in range(m):
        if not col_alive[j]:
            best = np.inf
            for i in range(n):
                best = min(best, cost_at(src, i, j) - f[i])
            g[j] = best


@njit(cache=True)
def artificial_tree(a, b, art, parent, flow, first_child, next_sib, prev_sib, pi, depth):
    """A star: every node hangs from an extra root n + m by an artificial arc of cost art[w]
    carrying its whole weight (strongly feasible: all flows positive). With art = warm
    potentials + M, the starting potentials are the warm ones shifted by M."""
    n, m = a.shape[0], b.shape[0]
    root = n + m
    first_child[:] = -1
    next_sib[:] = -1
    prev_sib[:] = -1
    parent[root], flow[root], pi[root], depth[root] = -1, 0.0, 0.0, 0
    for w in range(n + m):
        _link(w, root, parent, first_child, next_sib, prev_sib)
        flow[w] = a[w] if w < n else b[w - n]
        pi[w] = art[w]
        depth[w] = 1
    return root


@njit(cache=True)
def solve(src, a, b, row_order, col_order, art, block_rows, tol, max_iter, parent, flow, pi):
    """One transport problem end to end: the initial tree (north-west corner over the given
    orders or, when ``art`` is given, the artificial star), pivots, flows from the marginals.
    Fills parent, flow, pi (length n + m, plus the root n + m with ``art``); returns
    (status, pivots)."""
    n, m = a.shape[0], b.shape[0]
    size = parent.shape[0]
    first_child, next_sib = np.empty(size, np.int64), np.empty(size, np.int64)
    prev_sib, depth = np.empty(size, np.int64), np.empty(size, np.int64)
    if art.shape[0] > 0:
        root = artificial_tree(a, b, art, parent, flow, first_child, next_sib, prev_sib, pi, depth)
    else:
        root = northwest_tree(src, a, b, row_order, col_order, parent, flow, first_child, next_sib,
                              prev_sib, pi, depth)
    status, pivots = network_simplex(src, n, m, art, root, parent, flow, first_child, next_sib,
                                     prev_sib, pi, depth, block_rows, tol, max_iter)
    tree_flows(root, a, b, parent, first_child, next_sib, flow)
    return status, pivots


@njit(cache=True, parallel=True)
def solve_batch(Cs, As, Bs, block_rows, tol, max_iter, parents, flows, pis, status, pivots):
    """Independent problems Cs[k] in parallel, one per thread at a time."""
    n, m = As.shape[1], Bs.shape[1]
    identity_rows, identity_cols = np.arange(n), np.arange(m)
    no_art = np.empty(0)
    for k in prange(Cs.shape[0]):
        status[k], pivots[k] = solve(Cs[k], As[k], Bs[k], identity_rows, identity_cols, no_art,
                                     block_rows, tol, max_iter, parents[k], flows[k], pis[k])


@njit(cache=True)
def arc_costs(src, rows, cols):
    """C at the listed cells."""
    out = np.empty(rows.shape[0])
    for k in range(rows.shape[0]):
        out[k] = cost_at(src, rows[k], cols[k])
    return out
