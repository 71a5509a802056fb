"""Training batches made one step ahead on a helper thread: batch b + 1 is gathered (and augmented) while step b runs."""
import threading


class Ahead:
    """make(b) for b = 0, 1, … in order, each started on one helper thread when the one before it is taken.

    make runs exactly once per index and in index order, one call at a time, as in a plain loop: its random draws
    (augmentation) come in the same order and give the same batches. Gathering rows and numba's warp release the
    GIL, so on two cores the next batch costs the training step no time. close() waits for the batch being made,
    so that nothing else draws from the generator meanwhile, and ends the thread."""

    def __init__(self, make, count):
        self.make, self.count = make, count
        self.next, self.result, self.error = 0, None, None
        # two locks used as binary semaphores (C-level, a few µs less than Semaphore per hand-over): go is
        # released once per batch to start, done once per batch made; each release follows the other side's acquire
        self.go, self.done = threading.Lock(), threading.Lock()
        self.go.acquire()
        self.done.acquire()
        self.thread = threading.Thread(target=self._work, daemon=True, name="layerboard-batches")
        self.thread.start()
        self._start()

    def _start(self):
        if self.next < self.count:
            self.go.release()

    def _work(self):
        while True:
            self.go.acquire()
            if self.next >= self.count:                 # close()
                return
            try:
                self.result, self.error = self.make(self.next), None
            except BaseException as e:                  # noqa: BLE001  (re-raised in take())
                self.result, self.error = None, e
            self.done.release()

    def take(self, b):
        """Batch b (the next index), then starts making b + 1."""
        if b != self.next or b >= self.count:
            raise IndexError(f"batch {b} taken out of order (next is {self.next} of {self.count})")
        self.done.acquire()
        out, err = self.result, self.error
        self.next += 1
        self._start()
        if err is not None:
            raise err
        return out

    def close(self):
        """Wait for the batch in the making (if any) and end the helper thread."""
        if self.thread is None:
            return
        if self.next < self.count:
            self.done.acquire()                         # the batch being made: its draws are done
        self.next = self.count
        self.go.release()
        self.thread.join()
        self.thread = None


class InTurn:
    """make(b) called when batch b is taken (one thread: nothing to overlap)."""

    def __init__(self, make, count):
        self.make = make

    def take(self, b):
        return self.make(b)

    def close(self):
        pass
