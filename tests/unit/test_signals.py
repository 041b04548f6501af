"""bench/interrupts.py: SIGTERM as Ctrl-C, and the short steps that a signal waits for."""

from __future__ import annotations

import os
import signal

import pytest

from bench.interrupts import Terminated, interruption, signals_held, sigterm_as_interrupt


def test_sigterm_raises_terminated_once_then_the_default_is_back():
    with sigterm_as_interrupt():
        with pytest.raises(Terminated, match="received SIGTERM; stopping the run and cleaning up"):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next statement
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # a second SIGTERM ends the process
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_signals_held_are_noted_not_acted_on_and_the_handlers_come_back():
    with sigterm_as_interrupt():
        handler = signal.getsignal(signal.SIGTERM)
        with signals_held() as noted:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
        assert noted == [signal.SIGTERM, signal.SIGINT]
        assert signal.getsignal(signal.SIGTERM) is handler
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert [interruption(signum) for signum in noted] == ["received SIGTERM", "interrupted (Ctrl-C)"]


def test_a_held_signal_is_replayed_after_the_step():
    steps = []

    def step() -> None:
        with signals_held(replay=True):
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("finished")

    with sigterm_as_interrupt(), pytest.raises(Terminated):
        step()
    assert steps == ["finished"]
