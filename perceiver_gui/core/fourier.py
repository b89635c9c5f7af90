"""The Fourier position encoding as numbers a person can look at: its bands, its values along one axis,
the channels it adds, and whether its maximum frequency suits the input's resolution.

It mirrors `model.fourier_features` exactly (a test holds the two together). Along an axis of N pixels
the positions are x_i = -1 + 2i / (N - 1), i = 0 … N-1, and band k encodes x as sin(pi f_k x) and
cos(pi f_k x), with f_k = linspace(1, max_freq / 2, bands); the coordinate x itself is the last channel.

The Nyquist limit: neighbouring pixels lie 2 / (N - 1) apart, so band k turns by 2 pi f_k / (N - 1)
radians from one pixel to the next. Sampled values tell frequencies apart only while that turn is at
most pi (half a cycle per pixel), i.e. f_k <= (N - 1) / 2. A band above it takes the same values at the
pixels as the slower band |f_k - m (N - 1)| for the nearest integer m (up to sign): it aliases and adds
nothing new. The top band is max_freq / 2, so max_freq may go up to N - 1.

Only the plotted values need numpy, which is imported there: the form shows the note at launch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "FrequencyCheck",
    "added_channels",
    "axis_encoding",
    "band_frequencies",
    "check_frequencies",
    "nyquist_limit",
]

COARSE = 0.25  # a top band below this share of the Nyquist limit only tells coarse positions apart


def band_frequencies(max_freq: float, num_bands: int) -> tuple[float, ...]:
    """f_1 … f_bands, as the model spaces them: evenly from 1 to max_freq / 2 (just 1.0 for one band)."""
    if num_bands <= 0:
        return ()
    if num_bands == 1:
        return (1.0,)
    step = (max_freq / 2 - 1.0) / (num_bands - 1)
    return tuple(1.0 + k * step for k in range(num_bands))


def added_channels(input_axis: int, num_bands: int) -> int:
    """Channels the encoding adds to each input position: per axis, a sine and a cosine per band and the coordinate."""
    return input_axis * (2 * num_bands + 1)


def nyquist_limit(size: int) -> float:
    """The highest band frequency f that N = `size` pixels over [-1, 1] can carry: (N - 1) / 2."""
    return (size - 1) / 2


def axis_encoding(size: int, max_freq: float, num_bands: int):
    """(positions (N,), sines (bands, N), cosines (bands, N)) along one axis of `size` pixels, float64."""
    import numpy as np

    positions = np.linspace(-1.0, 1.0, size)
    scales = np.linspace(1.0, max_freq / 2, num_bands)
    angles = np.pi * scales[:, None] * positions[None, :]
    return positions, np.sin(angles), np.cos(angles)


@dataclass(frozen=True, slots=True)
class FrequencyCheck:
    """How the bands sit against the Nyquist limit of the shortest side, with one sentence for the form."""

    level: str  # "aliasing", "coarse", "ok", or "" when there is nothing to judge (no bands, one pixel)
    sentence: str
    limit: float  # the Nyquist limit as a band frequency, (N - 1) / 2
    top: float  # the fastest band's frequency
    aliased: int  # how many bands are above the limit


def check_frequencies(size: int, max_freq: float, num_bands: int, *, position: str = "pixel") -> FrequencyCheck:
    """Judge the bands for an axis of `size` pixels (the shortest side: it aliases first); `position` names
    one input position in the sentence (datasets.Kind.position: "pixel", a series' "time step")."""
    one, many = position, position + "s"
    bands = band_frequencies(max_freq, num_bands)
    limit = nyquist_limit(size)
    if not bands or size < 2:
        what = "no bands, so only the coordinate itself" if not bands else f"one {one}, so no frequencies"
        return FrequencyCheck("", f"With {what} encodes position.", limit, 0.0, 0)
    top = max(bands)
    per_cycle = (size - 1) / top  # pixels per cycle of the fastest band: its period 2 / f over a spacing of 2 / (N - 1)
    best = _number(2 * limit)
    aliased = sum(f > limit + 1e-9 for f in bands)
    if aliased:
        m = round(top / (size - 1))
        looks_like = abs(top - m * (size - 1))
        sentence = (f"Max frequency {_number(max_freq)} is above the Nyquist limit of {size} {many} ({best}): "
                    f"{aliased} of {len(bands)} bands change faster than half a cycle per {one}, so at the {many} "
                    f"they repeat slower bands (the fastest, f = {_number(top)}, looks like f = {_number(looks_like)}). "
                    f"Use at most {best}.")
        return FrequencyCheck("aliasing", sentence, limit, top, aliased)
    if top < COARSE * limit:
        sentence = (f"Max frequency {_number(max_freq)} is far below the Nyquist limit of {size} {many} ({best}): "
                    f"the fastest band repeats only every {_number(per_cycle)} {many}, so nearby {many} get almost "
                    f"the same code and the model knows positions only coarsely.")
        return FrequencyCheck("coarse", sentence, limit, top, 0)
    sentence = (f"The fastest band repeats every {_number(per_cycle)} {many} (the limit is 2, "
                f"reached at max frequency {best}).")
    return FrequencyCheck("ok", sentence, limit, top, 0)


def _number(value: float) -> str:
    """6.0 -> '6', 3.5 -> '3.5', 2.3333 -> '2.33'."""
    return f"{value:.3g}" if not math.isclose(value, round(value)) else str(round(value))
