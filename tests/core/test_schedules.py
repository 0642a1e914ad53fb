import pytest
import torch

from ledits_core import custom_sigmas, diffusers_sigmas, exact_sigmas


def timesteps(sigmas, table):
    """Nearest integer timestep of each sigma (ComfyUI's ModelSamplingDiscrete.timestep)."""
    log_table = table.log()
    return [int((log_table - torch.log(s)).abs().argmin()) for s in sigmas]


@pytest.mark.parametrize("steps, skip, first, last, stride", [
    (30, 0.15, 841, 29, 28), (50, 0.15, 851, 18, 17), (50, 0.10, 851, 18, 17),
    (50, 0.20, 801, 17, 16), (20, 0.15, 821, 42, 41)])
def test_diffusers_grid_matches_the_pipeline(sigma_table, steps, skip, first, last, stride):
    s = diffusers_sigmas(sigma_table, steps, skip)
    assert s.shape == (steps + 1,) and float(s[-1]) == 0.0
    t = timesteps(s[:-1], sigma_table)
    assert t[0] == first and t[-1] == last
    assert all(a - b == stride for a, b in zip(t, t[1:]))


def test_diffusers_sigma_values(sigma_table):
    s = diffusers_sigmas(sigma_table, 30, 0.15)
    assert abs(float(s[0]) - 6.197) < 2e-3 and abs(float(s[-2]) - 0.1673) < 2e-4


def test_exact_schedule_is_the_official_linspace(sigma_table):
    s = exact_sigmas(sigma_table, 30, 0.15)
    t = timesteps(s[:-1], sigma_table)
    assert t[:6] == [849, 819, 790, 761, 732, 702] and t[-3:] == [59, 30, 1]
    assert float(s[-1]) == float(sigma_table[0])  # ends at sigma(0), not 0
    assert bool((s[1:] < s[:-1]).all())


@pytest.mark.parametrize("steps", [1, 2, 3, 15, 50])
@pytest.mark.parametrize("skip", [0.0, 0.15, 0.5])
def test_exact_schedule_lengths(sigma_table, steps, skip):
    s = exact_sigmas(sigma_table, steps, skip)
    assert s.shape == (steps + 1,) and bool((s[1:] < s[:-1]).all()) and float(s[-1]) > 0


def test_custom_sigmas_skip_and_exact_final():
    user = torch.tensor([14.6, 8.0, 4.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.05, 0.02, 0.0])
    assert torch.equal(custom_sigmas(user, 0.0), user)
    kept = custom_sigmas(user, 0.25)  # 10 steps, drop 2
    assert torch.equal(kept, user[2:])
    exact = custom_sigmas(user, 0.0, final_sigma=0.0292)
    assert float(exact[-1]) == pytest.approx(0.01)  # min(0.0292, 0.02/2)
    assert bool((exact[1:] < exact[:-1]).all())


@pytest.mark.parametrize("skip", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_skip(sigma_table, skip):
    with pytest.raises(ValueError, match="skip"):
        exact_sigmas(sigma_table, 10, skip)
    with pytest.raises(ValueError, match="skip"):
        diffusers_sigmas(sigma_table, 10, skip)


@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_bad_steps(sigma_table, steps):
    with pytest.raises(ValueError, match="steps"):
        exact_sigmas(sigma_table, steps, 0.1)


def test_too_many_steps_for_skip(sigma_table):
    with pytest.raises(ValueError, match="fewer steps"):
        exact_sigmas(sigma_table, 900, 0.5)


def test_bad_custom_sigmas():
    with pytest.raises(ValueError, match="descending"):
        custom_sigmas(torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="at least 2"):
        custom_sigmas(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="finite"):
        custom_sigmas(torch.tensor([float("nan"), 1.0]))
