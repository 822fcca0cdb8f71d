"""The projector lease's contract: one holder at a time, whatever the backend, and a dead holder's lease is
free (at once, or a moment later, once a database server has seen its session end).

A backend's subclass provides the fixture `backend`: the Backend of one database (made if missing).
"""

import os
import signal
import threading
import time

import pytest


class LeaseContract:
    """The tests of the projector's lease every backend must pass."""

    @pytest.fixture
    def leases(self, backend):
        """A function making a new, unheld lease of the backend's database; every one is released after the test."""
        conn = backend.connect()
        store, made = backend.event_store(conn), []
        store.create_schema()

        def lease():
            made.append(backend.projector_lease(store))
            return made[-1]

        yield lease
        for lease in made:
            lease.release()
        store.close()
        conn.close()

    def test_one_holder_at_a_time(self, leases):
        first, second = leases(), leases()
        assert first.acquire() and first.held
        assert first.acquire()  # already held here
        assert not second.acquire() and not second.held
        first.release()
        second.release()

    def test_a_released_lease_is_taken_by_another(self, leases):
        first, second = leases(), leases()
        assert first.acquire()
        first.release()
        assert not first.held
        assert second.acquire()
        second.release()

    def test_the_holder_is_woken_by_its_process_appends_and_otherwise_looks_again_soon(self, leases):
        holder, appended = leases(), threading.Event()
        assert holder.acquire()
        appended.set()  # as the process's group committer does after a commit
        started = time.monotonic()
        assert holder.await_appends(appended)
        assert not appended.is_set()  # heard: the next wait waits for the next append
        assert time.monotonic() - started < 1
        started = time.monotonic()
        assert not holder.await_appends(appended)  # nothing appended: the holder looks at the log itself
        assert time.monotonic() - started < 1
        holder.release()

    def test_the_lease_of_a_killed_holder_is_taken_over(self, leases):
        ready_to_read, ready = os.pipe()
        holder = os.fork()
        if holder == 0:
            try:
                os.write(ready, b"1" if leases().acquire() else b"0")
                signal.pause()  # holds the lease until killed
            finally:
                os._exit(1)
        os.close(ready)
        try:
            assert os.read(ready_to_read, 1) == b"1"
            taker = leases()
            assert not taker.acquire()
        finally:
            os.kill(holder, signal.SIGKILL)
            os.waitpid(holder, 0)
            os.close(ready_to_read)
        assert taken_within(taker, TAKEOVER_SECONDS)
        taker.release()


# How soon a dead holder's lease is free: a server notices a session's end a moment after its client died.
TAKEOVER_SECONDS = 5


def taken_within(lease, seconds: float) -> bool:
    """Whether `lease` is taken within `seconds`, asked again every few milliseconds."""
    deadline = time.monotonic() + seconds
    while not lease.acquire():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
