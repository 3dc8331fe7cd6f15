from components.rl.sampler import PromptSampler


def test_each_epoch_is_a_permutation_and_state_round_trips():
    s = PromptSampler(5, seed=3)
    first = s.next(5)
    assert sorted(first) == [0, 1, 2, 3, 4]
    s.next(2)
    state = s.state_dict()
    expected = s.next(6)
    t = PromptSampler(5, seed=3)
    t.load_state_dict(state)
    assert t.next(6) == expected
