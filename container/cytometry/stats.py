"""Exact population statistics: median and robust CV per channel.

Percentiles use numpy's default definition (linear interpolation between order statistics), so
they equal `np.percentile`; only the order statistics at the needed ranks are ever found.

Small populations (cache-sized) are gathered into a scratch buffer and the ranks are fixed with
single-kth in-place partitions: numpy's multi-kth `partition` is ~10x slower than one SIMD
select, and each later select only sees the segment between ranks already fixed.

Large populations are never copied. For each channel, a strided subsample of each population
(n/16 events, at least 2,048 and at most 65,536, sorted) brackets every needed rank between two
sample values with a margin of 5 binomial standard errors; overlapping brackets of different
populations are merged. One pass over the channel, in cache-sized chunks, then counts each
population's events below each bracket (comparison and mask) and keeps the positions of the few
events inside any bracket; the exact order statistics are selected among those, with the
population's non-members set to +inf so that they sort after every member. A rank that falls
outside its bracket (possible in principle, not seen in practice) makes that population and
channel fall back to the full select. NaN compares false, so it behaves as in a sort (after
every number) on both paths. The results are the same order statistics either way.
"""

from __future__ import annotations

import math

import numpy as np

LOW, MID, HIGH = 0.1587, 0.5, 0.8413  # P15.87 and P84.13: the 1-sigma points of a normal
QS = (LOW, MID, HIGH)
CHUNK = 1 << 16  # events per pass step: values and masks stay in L2
SMALL = 1 << 16  # up to this many events a population is gathered and partitioned
SUBSAMPLE = 1 << 16  # most events in the subsample that places the brackets
MARGIN_SE = 5.0  # bracket half-width in binomial standard errors of the subsample rank


def quantiles(values: np.ndarray, qs: tuple[float, ...] = QS) -> list[float]:
    """Linear-interpolated quantiles of a 1-D array, which is reordered in place (scratch)."""
    n = values.size
    if n == 0:
        return [math.nan] * len(qs)
    known: dict[int, float] = {}
    _select(values, 0, n, _ranks(n, qs), known)
    return _interpolate(n, qs, known)


def _ranks(n: int, qs: tuple[float, ...]) -> list[int]:
    return sorted({r for q in qs for h in (q * (n - 1),) for r in (math.floor(h), min(math.floor(h) + 1, n - 1))})


def _interpolate(n: int, qs: tuple[float, ...], known: dict[int, float]) -> list[float]:
    out = []
    for q in qs:
        h = q * (n - 1)
        k = math.floor(h)
        lo = known[k]
        hi = known[min(k + 1, n - 1)]
        out.append(lo + (hi - lo) * (h - k))
    return out


def _select(a: np.ndarray, lo: int, hi: int, ranks: list[int], known: dict[int, float]) -> None:
    """Fix the given ranks; a[lo:hi] holds exactly the order statistics lo..hi-1."""
    if not ranks:
        return
    if ranks == [lo]:
        known[lo] = float(a[lo:hi].min())
        return
    if ranks == [hi - 1]:
        known[hi - 1] = float(a[lo:hi].max())
        return
    mid = ranks[len(ranks) // 2]
    a[lo:hi].partition(mid - lo)
    known[mid] = float(a[mid])
    _select(a, lo, mid, [r for r in ranks if r < mid], known)
    _select(a, mid + 1, hi, [r for r in ranks if r > mid], known)


def median_rcv(values: np.ndarray) -> tuple[float, float]:
    """(median, rCV %) with rCV = 100 * 0.5 * (P84.13 - P15.87) / median; NaN when median <= 0."""
    return _median_rcv(quantiles(values))


def _median_rcv(q: list[float]) -> tuple[float, float]:
    low, mid, high = q
    if not mid > 0:
        return mid, math.nan
    return mid, 100.0 * 0.5 * (high - low) / mid


def _subsample_size(n: int) -> int:
    return max(2048, min(SUBSAMPLE, n // 16))


Plan = list[tuple[int, int, list[int]]]  # (low, high) subsample positions around each group of ranks


def _bracket_plan(n: int, m: int) -> Plan:
    """Where in a sorted subsample of m events the brackets of a population of n events lie."""
    groups: list[list[int]] = []
    for r in _ranks(n, QS):
        if groups and r == groups[-1][-1] + 1:
            groups[-1].append(r)
        else:
            groups.append([r])
    plan = []
    for group in groups:
        q_lo, q_hi = group[0] / max(n - 1, 1), group[-1] / max(n - 1, 1)
        se = math.sqrt(m * max(q_lo * (1 - q_lo), q_hi * (1 - q_hi), 1.0 / m))
        a = math.floor(q_lo * (m - 1) - MARGIN_SE * se) - 1
        b = math.ceil(q_hi * (m - 1) + MARGIN_SE * se) + 1
        plan.append((a, b, group))
    return plan


def _brackets(sub: np.ndarray, plan: Plan) -> list[tuple[float, float, list[int]]] | None:
    """(low, high, ranks) value brackets around groups of adjacent ranks; None when NaN gets in the way."""
    m = sub.size
    values = sub[[min(max(i, 0), m - 1) for a, b, _ in plan for i in (a, b)]].tolist()
    out = []
    for k, (a, b, group) in enumerate(plan):
        low = values[2 * k] if a >= 0 else -math.inf
        high = values[2 * k + 1] if b < m else math.inf
        if math.isnan(low) or math.isnan(high):
            return None
        out.append((low, high, group))
    return out


def _size(sample: np.ndarray | slice, total: int) -> int:
    return len(range(*sample.indices(total))) if isinstance(sample, slice) else sample.size


class _Union:
    """Overlapping brackets of several populations, merged: one pair of comparisons serves them all."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high
        self.members: list[tuple[int, list[int]]] = []  # (population, ranks)
        self.pops: list[int] = []
        self.below: dict[int, int] = {}


class Measurer:
    """Median and rCV of channels over populations, with buffers reused across calls and files."""

    def __init__(self) -> None:
        self._scratch = np.empty(0, dtype=np.float32)
        self._b1 = np.empty(2 * CHUNK, dtype=bool)
        self._b2 = np.empty(2 * CHUNK, dtype=bool)
        self._b3 = np.empty(2 * CHUNK, dtype=bool)
        self._any = np.empty(2 * CHUNK, dtype=bool)

    def _buffer(self, n: int, dtype: np.dtype[np.generic]) -> np.ndarray:
        if self._scratch.dtype != dtype or self._scratch.size < n:
            self._scratch = np.empty(0, dtype=dtype)  # free the old one first
            self._scratch = np.empty(n, dtype=dtype)
        return self._scratch[:n]

    def release(self) -> None:
        self._scratch = np.empty(0, dtype=np.float32)

    def measure(
        self, events: np.ndarray, channels: list[int], masks: list[np.ndarray | None]
    ) -> list[dict[int, tuple[float, float]]]:
        """Median and rCV of each channel (row of `events`) for each population (mask; None: all)."""
        total = events.shape[1]
        counts = [total if m is None else int(np.count_nonzero(m)) for m in masks]
        small = [p for p, n in enumerate(counts) if n <= SMALL]
        large = [p for p, n in enumerate(counts) if n > SMALL]
        index = {p: (None if masks[p] is None else np.flatnonzero(masks[p])) for p in small}
        samples = {p: self._sample_positions(masks[p], total, counts[p]) for p in large}
        plans = {p: _bracket_plan(counts[p], _size(samples[p], total)) for p in large}
        out: list[dict[int, tuple[float, float]]] = [{} for _ in masks]
        for j in channels:
            row = events[j]
            for p in small:
                out[p][j] = _median_rcv(self._gathered(row, index[p], counts[p]))
            if large:
                found = self._joint(row, [(p, masks[p], counts[p], samples[p], plans[p]) for p in large])
                for p in large:
                    known = found.get(p)
                    if known is None:  # a rank outside its bracket: select over the whole population
                        idx = None if masks[p] is None else np.flatnonzero(masks[p])
                        q = self._gathered(row, idx, counts[p])
                    else:
                        q = _interpolate(counts[p], QS, known)
                    out[p][j] = _median_rcv(q)
        return out

    def population(
        self, events: np.ndarray, channels: list[int], index: np.ndarray | None
    ) -> dict[int, tuple[float, float]]:
        """Median and rCV of each channel over the events in `index` (None: all events)."""
        mask = None
        if index is not None:
            mask = np.zeros(events.shape[1], dtype=bool)
            mask[index] = True
        return self.measure(events, channels, [mask])[0]

    def _gathered(self, row: np.ndarray, index: np.ndarray | None, n: int) -> list[float]:
        if n == 0:
            return [math.nan] * len(QS)
        scratch = self._buffer(n, row.dtype)
        if index is None:
            np.copyto(scratch, row)
        else:
            np.take(row, index, out=scratch)
        known: dict[int, float] = {}
        _select(scratch, 0, n, _ranks(n, QS), known)
        return _interpolate(n, QS, known)

    @staticmethod
    def _sample_positions(mask: np.ndarray | None, total: int, n: int) -> np.ndarray | slice:
        step = max(1, n // _subsample_size(n))
        if mask is None:
            return slice(None, None, step)
        candidates = np.arange(0, total, step)
        return candidates[mask[candidates]]

    def _joint(
        self, row: np.ndarray, pops: list[tuple[int, np.ndarray | None, int, np.ndarray | slice, Plan]]
    ) -> dict[int, dict[int, float] | None]:
        """Exact order statistics of several large populations of one channel, in one pass."""
        result: dict[int, dict[int, float] | None] = {}
        spans: list[tuple[float, float, int, list[int]]] = []
        for p, _, _, sample, plan in pops:
            brackets = _brackets(np.sort(row[sample]), plan)
            if brackets is None:
                result[p] = None
                continue
            spans.extend((low, high, p, ranks) for low, high, ranks in brackets)
        if not spans:
            return result
        spans.sort(key=lambda s: s[0])
        unions: list[_Union] = []
        for low, high, p, ranks in spans:
            if not unions or low > unions[-1].high:
                unions.append(_Union(low, high))
            u = unions[-1]
            u.high = max(u.high, high)
            u.members.append((p, ranks))
            if p not in u.pops:
                u.pops.append(p)
                u.below[p] = 0
        masks = {p: mask for p, mask, _, _, _ in pops}
        total = row.size
        positions: list[np.ndarray] = []
        b1, b2, b3, hit = self._b1, self._b2, self._b3, self._any
        step = total if total <= 2 * CHUNK else CHUNK  # a small file in one step
        for a in range(0, total, step):
            b = min(a + step, total)
            size = b - a
            v = row[a:b]
            below, inside, tmp, anyhit = b1[:size], b2[:size], b3[:size], hit[:size]
            for k, u in enumerate(unions):
                open_low = u.low == -math.inf
                if not open_low:
                    np.less(v, u.low, out=below)
                    for p in u.pops:
                        mask = masks[p]
                        if mask is None:
                            u.below[p] += int(np.count_nonzero(below))
                        else:
                            np.logical_and(below, mask[a:b], out=tmp)
                            u.below[p] += int(np.count_nonzero(tmp))
                target = anyhit if k == 0 else inside
                np.less_equal(v, u.high, out=target)
                if not open_low:
                    np.greater(target, below, out=target)  # inside: <= high and not < low
                if k:
                    np.logical_or(anyhit, inside, out=anyhit)
            pos = np.flatnonzero(anyhit)
            if pos.size:
                pos += a
                positions.append(pos)
        where = np.concatenate(positions) if positions else np.empty(0, dtype=np.intp)
        values = row[where]
        for u in unions:
            pick = np.flatnonzero((values >= u.low) & (values <= u.high))
            in_union, at = values[pick], where[pick]
            for p, ranks in u.members:
                if result.get(p, {}) is None:
                    continue
                mask = masks[p]
                if mask is None:
                    found, members = in_union.copy(), in_union.size
                else:
                    # Non-members become +inf: they sort after every member, so the members'
                    # ranks (and values) are unchanged and no dense compaction is needed.
                    member = mask[at]
                    found = np.where(member, in_union, np.float32(np.inf)).astype(row.dtype, copy=False)
                    members = int(np.count_nonzero(member))
                start = u.below[p]
                if not (start <= ranks[0] and ranks[-1] < start + members):
                    result[p] = None
                    continue
                part: dict[int, float] = {}
                _select(found, 0, found.size, [r - start for r in ranks], part)
                known = result.setdefault(p, {})
                assert known is not None
                known.update({r + start: v for r, v in part.items()})
        return result


def population_stats(
    events: np.ndarray, channels: list[int], index: np.ndarray | None
) -> dict[int, tuple[float, float]]:
    """Median and rCV of each channel over the events in `index` (None: all events)."""
    return Measurer().population(events, channels, index)


def median(values: np.ndarray) -> float:
    """`float(np.median(values))` for a 1-D float array (the same number; a zero's sign may differ).

    np.median partitions with several kth at once (the slow multi-kth introselect); this fixes
    the middle rank(s) one select at a time and averages as np.mean does (in the array's dtype).
    The input is not modified.
    """
    n = values.size
    if n == 0 or np.isnan(values).any():
        return float(np.median(values)) if n else math.nan
    a = values.copy()
    known: dict[int, float] = {}
    half = n // 2
    _select(a, 0, n, [half - 1, half] if n % 2 == 0 else [half], known)
    if n % 2:
        return known[half]
    kind = a.dtype.type
    total = kind(known[half - 1]) + (kind(0) + kind(known[half]))
    return float(total / kind(2))


def percentile(values: np.ndarray, percents: list[float]) -> list[float]:
    """`np.percentile(values, percents)` (method "linear") for a 1-D float64 array, with single-kth selects.

    The same virtual index, neighbours and interpolation (numpy's _lerp) as numpy, so the same
    numbers; numpy itself is used for other dtypes, NaN and empty input. The input is not modified.
    """
    n = values.size
    if values.dtype != np.float64 or n == 0 or np.isnan(values).any():
        return [float(x) for x in np.atleast_1d(np.percentile(values, percents))]
    plan = _percentile_plan(n, percents)
    a = values.copy()
    known: dict[int, float] = {}
    _select(a, 0, n, sorted({i % n for prev, nxt, _ in plan for i in (prev, nxt)}), known)
    return _lerp(plan, known, n)


def sorted_percentile(ordered: np.ndarray, percents: list[float]) -> list[float]:
    """`percentile` of a sorted, non-empty 1-D float64 array without NaN (the same numbers, no select)."""
    n = ordered.size
    plan = _percentile_plan(n, percents)
    known = {i % n: float(ordered[i % n]) for prev, nxt, _ in plan for i in (prev, nxt)}
    return _lerp(plan, known, n)


def _percentile_plan(n: int, percents: list[float]) -> list[tuple[int, int, float]]:
    """numpy's virtual index for each percent: (previous rank, next rank, fraction)."""
    plan: list[tuple[int, int, float]] = []
    for p in percents:
        virtual = (n - 1) * (p / 100)
        prev = math.floor(virtual)
        nxt = prev + 1
        if virtual >= n - 1:
            prev = nxt = -1
        if virtual < 0:
            prev = nxt = 0
        plan.append((prev, nxt, virtual - prev))
    return plan


def _lerp(plan: list[tuple[int, int, float]], known: dict[int, float], n: int) -> list[float]:
    """numpy's _lerp between the neighbouring order statistics."""
    out = []
    for prev, nxt, t in plan:
        lo, hi = known[prev % n], known[nxt % n]
        diff = hi - lo
        out.append(hi - diff * (1 - t) if t >= 0.5 else lo + diff * t)
    return out


def sorted_histogram(ordered: np.ndarray, bins: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """`np.histogram(values, bins, range=(low, high))` of sorted values: the same counts and edges.

    numpy assigns a value to bin i when edges[i] <= value < edges[i + 1] (the last bin also
    takes value == high) and drops values outside the range; on sorted values those counts are
    differences of binary-search positions, without numpy's per-value index arithmetic.
    """
    edges = np.linspace(low, high, bins + 1)
    at = np.searchsorted(ordered, edges, side="left")
    at[-1] = np.searchsorted(ordered, edges[-1], side="right")
    return np.diff(at), edges


MOMENT_CHUNK = 1 << 12  # events per float64 block: the stacked block (3 x channels x 8 B) stays in L2


def moments(
    events: np.ndarray, channels: list[int], masks: list[np.ndarray | None]
) -> list[dict[int, tuple[float, float, float]]]:
    """(mean, geometric mean, CV %) of each channel for each population (mask; None: all events).

    Sums in float64, one block of events at a time, all populations at once as one matrix
    product per block: the population indicator matrix (populations x events) times the block's
    values, their squares and their logarithms. Values are centred on a per-channel reference
    (the mean of a strided subsample) before squaring, so that the variance of a channel with a
    large mean and a small spread does not cancel away. The CV is 100 x SD / mean with the
    sample SD (n - 1); NaN when the mean is <= 0 or fewer than 2 events. The geometric mean is
    exp(mean(ln x)) over the events with x > 0 (a logarithm needs a positive value; compensated
    negatives are left out, not clamped); NaN when there are none.
    """
    total = events.shape[1]
    n_pop, n_ch = len(masks), len(channels)
    counts = np.array([total if m is None else int(np.count_nonzero(m)) for m in masks], dtype=np.float64)
    ref = np.array(
        [float(np.mean(events[j, :: max(1, total // 4096)], dtype=np.float64)) if total else 0.0 for j in channels]
    )
    ref[~np.isfinite(ref)] = 0.0
    positive = np.zeros((n_pop, n_ch))
    width = min(MOMENT_CHUNK, max(total, 1))
    indicator = np.ones((n_pop, width))
    indicator32 = np.ones((n_pop, width), dtype=np.float32)
    # one buffer for the three per-event quantities, so one product per block sums them all
    stacked = np.empty((3 * n_ch, width))
    is_pos = np.empty((n_ch, width), dtype=bool)
    acc = np.zeros((n_pop, 3 * n_ch))
    for a in range(0, total, MOMENT_CHUNK):
        b = min(a + MOMENT_CHUNK, total)
        size = b - a
        ind, ind32 = indicator[:, :size], indicator32[:, :size]
        for p, mask in enumerate(masks):
            if mask is not None:
                ind[p] = mask[a:b]
                ind32[p] = mask[a:b]
        block = stacked[:, :size]
        values, squared, log = block[:n_ch], block[n_ch : 2 * n_ch], block[2 * n_ch :]
        pos = is_pos[:, :size]
        np.copyto(values, events[channels, a:b])
        np.greater(values, 0, out=pos)
        log.fill(0.0)
        np.log(values, out=log, where=pos)  # ln x where x > 0, else 0
        values -= ref[:, None]
        np.multiply(values, values, out=squared)
        acc += ind @ block.T
        # counts of 0/1 in float32 are exact below 2**24 (a block is far smaller)
        positive += ind32 @ pos.T.astype(np.float32)
    sums, squares, logs = acc[:, :n_ch], acc[:, n_ch : 2 * n_ch], acc[:, 2 * n_ch :]
    out: list[dict[int, tuple[float, float, float]]] = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for p in range(n_pop):
            n = counts[p]
            row: dict[int, tuple[float, float, float]] = {}
            for k, j in enumerate(channels):
                if n == 0:
                    row[j] = (math.nan, math.nan, math.nan)
                    continue
                centred = sums[p, k] / n
                mean = centred + ref[k]
                cv = math.nan
                if n >= 2 and mean > 0:
                    var = max((squares[p, k] - n * centred * centred) / (n - 1), 0.0)
                    cv = 100.0 * math.sqrt(var) / mean
                gmean = math.exp(logs[p, k] / positive[p, k]) if positive[p, k] else math.nan
                row[j] = (float(mean), gmean, cv)
            out.append(row)
    return out
