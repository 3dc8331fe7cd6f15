"""ThreadChooser: the thread count of a repeated piece of work follows its measured speed."""

import torch

from components.infra.threads import ThreadChooser, torch_threads


def test_the_faster_count_is_used_and_the_other_retried_now_and_then():
    chooser = ThreadChooser([1, 2], explore_every=4)
    speed = {1: 3.0, 2: 1.0}  # seconds per unit: two threads faster (a quiet machine)
    picks = []
    for _ in range(40):
        n = chooser.pick()
        picks.append(n)
        chooser.record(n, speed[n], 1.0)
    assert picks[:2] == [1, 2]  # each measured once first
    assert picks[2:].count(2) > 0.7 * len(picks[2:]) and 1 in picks[2:]  # mostly 2, 1 retried
    speed = {1: 1.2, 2: 4.0}  # another process takes a core: one thread is now faster
    for _ in range(20):
        n = chooser.pick()
        chooser.record(n, speed[n], 1.0)
    later = [chooser.pick() for _ in range(3)]
    assert later.count(1) >= 2


def test_run_measures_the_block_on_the_chosen_count_and_restores_torch():
    before = torch.get_num_threads()
    chooser = ThreadChooser([1, max(2, before)])
    with chooser.run() as work:
        inside = torch.get_num_threads()
        work.append(10)
    assert inside == 1 and torch.get_num_threads() == before
    assert set(chooser.cost) == {1} and chooser.cost[1] > 0
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_fewer_threads_only_when_clearly_faster():
    chooser = ThreadChooser([1, 2], explore_every=100, margin=0.1)
    for n, cost in ((1, 0.95), (2, 1.0)):  # one thread 5 % faster: noise on a quiet machine
        chooser.record(n, cost, 1.0)
    assert chooser.pick() == 2
    for _ in range(3):
        chooser.record(1, 0.5, 1.0)  # twice as fast: another process holds a core
    assert chooser.pick() == 1
