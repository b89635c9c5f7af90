"""The Fourier encoding the form plots is the model's own, and the note judges it against Nyquist."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perceiver_gui.config import ModelConfig
from perceiver_gui.core.complexity import parameter_count
from perceiver_gui.core.fourier import (
    added_channels,
    axis_encoding,
    band_frequencies,
    check_frequencies,
    nyquist_limit,
)
from perceiver_gui.core.model import fourier_features


@pytest.mark.parametrize(("axes", "max_freq", "bands"), [
    ((8, 8), 4.0, 6), ((5, 12), 10.0, 3), ((32, 32), 32.0, 16), ((7, 3), 0.5, 4), ((9, 9), 6.0, 1), ((4, 4), 4.0, 0),
])
def test_the_plotted_values_are_the_models_own_encoding(axes, max_freq, bands):
    enc = fourier_features(axes, max_freq, bands, "cpu", torch.float64)
    assert enc.shape[-1] == added_channels(len(axes), bands)
    enc = enc.reshape(*axes, len(axes), 2 * bands + 1).numpy()
    for axis, size in enumerate(axes):
        positions, sines, cosines = axis_encoding(size, max_freq, bands)
        along = np.moveaxis(enc[..., axis, :], axis, 0).reshape(size, -1, 2 * bands + 1)[:, 0, :]  # (size, channels)
        np.testing.assert_allclose(sines.T, along[:, :bands], atol=1e-12)
        np.testing.assert_allclose(cosines.T, along[:, bands:2 * bands], atol=1e-12)
        np.testing.assert_allclose(positions, along[:, -1], atol=1e-12)
    np.testing.assert_allclose(band_frequencies(max_freq, bands), np.linspace(1.0, max_freq / 2, bands), atol=1e-12)


def test_added_channels_are_what_the_model_reads():
    with_bands = ModelConfig(input_channels=3, num_freq_bands=6, input_axis=2)
    without = ModelConfig(input_channels=3 + added_channels(2, 6), fourier_encode_data=False, input_axis=2)
    assert added_channels(2, 6) == 26
    assert parameter_count(with_bands) == parameter_count(without)


def test_the_nyquist_limit_is_where_samples_stop_telling_frequencies_apart():
    size = 8
    limit = nyquist_limit(size)
    assert limit == 3.5
    x = np.linspace(-1, 1, size)
    # A band above the limit takes the same values at the pixels as its alias |f - (N - 1)|, up to sign.
    for f in (4.0, 5.0, 6.0):
        alias = abs(f - (size - 1))
        assert np.allclose(np.abs(np.sin(np.pi * f * x)), np.abs(np.sin(np.pi * alias * x)))
        assert np.allclose(np.abs(np.cos(np.pi * f * x)), np.abs(np.cos(np.pi * alias * x)))
    # Below it, distinct frequencies give distinct samples.
    below = np.linspace(1, limit, 6)
    rows = np.abs(np.sin(np.pi * below[:, None] * x))
    assert min(np.abs(a - b).max() for i, a in enumerate(rows) for b in rows[i + 1:]) > 0.05


def test_the_note_flags_aliasing_and_coarse_positions():
    check = check_frequencies(8, 12.0, 6)  # bands 1 … 6 over 8 pixels, limit 3.5
    assert check.level == "aliasing" and check.aliased == 3 and check.top == 6.0
    assert "above the Nyquist limit" in check.sentence and "at most 7" in check.sentence
    assert "looks like f = 1" in check.sentence

    assert check_frequencies(8, 7.0, 6).level == "ok"  # the top band exactly at the limit is still carried
    assert check_frequencies(8, 4.0, 6).level == "ok"  # the digits preset
    coarse = check_frequencies(224, 10.0, 6)  # top band 5 against a limit of 111.5
    assert coarse.level == "coarse" and "far below" in coarse.sentence and "coarsely" in coarse.sentence
    assert check_frequencies(32, 32.0, 6).level == "aliasing"  # the paper's max_freq = N is one pixel too many
    assert check_frequencies(32, 31.0, 6).level == "ok"
    assert check_frequencies(8, 4.0, 0).level == "" and "only the coordinate" in check_frequencies(8, 4.0, 0).sentence
    assert math.isclose(check_frequencies(32, 16.0, 8).top, 8.0)


def test_the_note_speaks_of_the_inputs_own_positions():
    check = check_frequencies(64, 100.0, 8, position="time step")  # a series of 64 steps: the limit is 63
    assert "Nyquist limit of 64 time steps (63)" in check.sentence and "per time step" in check.sentence
    assert "pixel" not in check.sentence
    assert "repeats every" in check_frequencies(64, 30.0, 8, position="time step").sentence
    assert "pixel" not in check_frequencies(64, 30.0, 8, position="time step").sentence
