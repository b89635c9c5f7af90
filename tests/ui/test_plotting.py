"""The plotting toolkit's helpers on their own (tests/ui/test_plots.py has them inside the live plots)."""

import numpy as np

from perceiver_gui.ui.plotting import ema


def test_ema_matches_the_step_by_step_definition():
    rng = np.random.default_rng(1)
    values = rng.random(5000) * 3 + np.linspace(5, 0, 5000)
    for weight in (0.0, 0.01, 0.5, 0.9, 0.99):
        acc, expected = 0.0, []
        for i, v in enumerate(values):
            acc = acc * weight + (1 - weight) * v
            expected.append(acc / (1 - weight ** (i + 1)) if weight > 0 else v)
        np.testing.assert_allclose(ema(values, weight), expected, rtol=1e-10)
