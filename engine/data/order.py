"""Seeded random orders of n items by index arithmetic: any part of the order costs its own length, never an (n,)
array. Used where n is too large to shuffle at every epoch start (millions of memory-mapped rows)."""
import numpy as np

LARGE = 1 << 20          # more items than this: orders by index arithmetic (fewer: numpy's permutation, as before)
ROUNDS = 4               # Feistel rounds (four make a pseudo-random permutation, Luby–Rackoff)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


class Shuffled:
    """A seeded pseudo-random permutation of range(n): self[k] (slice or index array) gives the items at
    positions k. A balanced Feistel network on the smallest even number of bits that hold n - 1, with cycle
    walking to stay below n."""

    def __init__(self, n, rng):
        self.n = int(n)
        bits = max(2, (self.n - 1).bit_length())
        bits += bits & 1                                        # two halves of h bits
        self.h = np.uint64(bits // 2)
        self.mask = np.uint64((1 << (bits // 2)) - 1)
        self.keys = rng.integers(0, 1 << 62, size=ROUNDS, dtype=np.uint64)

    def __len__(self):
        return self.n

    def _round(self, r, k):
        """The round function: a 64-bit mix (splitmix64's finaliser) of the right half and the key."""
        f = (r ^ k) * _M1
        f ^= f >> np.uint64(31)
        f *= _M2
        f ^= f >> np.uint64(29)
        return f & self.mask

    def _encrypt(self, x):
        left, right = x >> self.h, x & self.mask
        for k in self.keys:
            left, right = right, left ^ self._round(right, k)
        return (left << self.h) | right

    def __getitem__(self, k):
        pos = np.arange(*k.indices(self.n)) if isinstance(k, slice) else np.asarray(k, np.int64)
        y = self._encrypt(pos.astype(np.uint64))
        out = np.flatnonzero(y >= self.n)                       # outside range(n): encrypt again (cycle walking)
        while out.size:
            v = y[out] = self._encrypt(y[out])
            out = out[v >= self.n]
        return y.astype(np.int64)


def order(rng, n):
    """A random order of range(n) for one epoch: numpy's permutation up to LARGE items, else Shuffled."""
    return rng.permutation(n) if n <= LARGE else Shuffled(n, rng)


def choose(rng, m, k):
    """(m,) bool marking k of range(m) chosen at random. Many items: random positions drawn until k distinct
    ones are marked (a uniform choice of k of them, without a shuffle of all m)."""
    mark = np.zeros(m, bool)
    if m <= LARGE:
        mark[rng.permutation(m)[:k]] = True
        return mark
    got = 0
    while got < k:
        mark[rng.integers(0, m, k - got)] = True
        got = int(np.count_nonzero(mark))
    return mark
