"""The attention dialog's work in a worker: a prediction and its cross-attention maps, as numpy arrays.

The dialog's module (ui/attention_view.py, which holds what crosses between the two) is loaded in the GUI
thread when the dialog is made, before its worker starts."""

from __future__ import annotations

import numpy as np

from perceiver_gui.core.audio import AudioError
from perceiver_gui.core.images import ImageError
from perceiver_gui.core.points import PointsError
from perceiver_gui.core.series import SeriesError, read_series
from perceiver_gui.ui.attention_view import AttentionResult, SeriesRow

__all__ = ["compute_attention"]


def compute_attention(predictor, name: str, source, top_k: int = 5) -> AttentionResult:
    """Run in a worker: the prediction and attention maps for one image (a path or encoded bytes), for one
    series (a SeriesRow of a file, or its values: float (C, L), NaN after its end), or, for a sound model, one
    sound (a path, or a clip of its run's split as the dataset holds it), or, for a point cloud model, one cloud
    (a mesh or point file, or a cloud of its run's split, (3, P))."""
    try:
        if predictor.takes_points:
            result = predictor.points_attention(source, name, top_k=top_k)
        elif predictor.takes_audio:
            result = predictor.sound_attention(source, name, top_k=top_k)
        elif isinstance(source, SeriesRow | np.ndarray):
            values = _series_values(predictor, source)
            result = predictor.series_attention(values, name, top_k=top_k)
        else:
            result = predictor.attention(source, top_k=top_k)
    except (ImageError, SeriesError, AudioError, PointsError) as exc:
        return AttentionResult(name, error=str(exc))
    maps = tuple(m.float().numpy().astype(np.float32, copy=True) for m in result.maps)
    if predictor.takes_points:
        return AttentionResult(name, tuple(result.prediction.top), maps=maps,
                               points=np.ascontiguousarray(result.image.numpy(), dtype=np.float32))
    if predictor.takes_audio:
        return AttentionResult(name, tuple(result.prediction.top), maps=maps,
                               sound=np.ascontiguousarray(result.image.numpy(), dtype=np.float32))
    if isinstance(source, SeriesRow | np.ndarray):
        return AttentionResult(name, tuple(result.prediction.top), maps=maps,
                               series=np.ascontiguousarray(result.image.numpy().T, dtype=np.float32))
    image = result.image.permute(1, 2, 0).contiguous().numpy()
    return AttentionResult(name, tuple(result.prediction.top), image, maps)


def _series_values(predictor, source: SeriesRow | np.ndarray) -> np.ndarray:
    """The series (C, l) itself: the file's row, or the values without the padding after them."""
    if isinstance(source, np.ndarray):
        kept = ~np.isnan(source).all(axis=0)
        return source[:, :int(kept.nonzero()[0].max()) + 1 if kept.any() else 0]
    found = read_series(source.path, label_column=predictor.meta.config.data.label_column, labelled=False)
    if not 1 <= source.row <= len(found.values):
        raise SeriesError(f"{source.path} has no series {source.row} (it holds {len(found.values)}); it changed "
                          f"since it was classified, so drop it again.")
    return found.values[source.row - 1]
