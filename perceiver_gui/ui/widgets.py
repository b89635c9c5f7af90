"""Small widgets the panels share."""

from __future__ import annotations

import math

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QDoubleSpinBox


class FloatSpinBox(QDoubleSpinBox):
    """A float spin box that shows values as written (0.003, 1e-05) instead of a fixed number of
    decimals, so a config survives the round trip through the form unchanged.

    With `log_step` the arrows multiply or divide by 2 — the natural step for learning rates and
    weight decay, which span several orders of magnitude.
    """

    def __init__(self, *, minimum: float, maximum: float, step: float = 0.1, log_step: bool = False, parent=None):
        super().__init__(parent)
        self._log_step = log_step
        self.setDecimals(12)  # QDoubleSpinBox rounds stored values to this many decimals
        self.setRange(minimum, maximum)
        self.setSingleStep(step)
        self.setKeyboardTracking(True)

    def textFromValue(self, value: float) -> str:  # noqa: N802 (Qt override)
        return f"{value:.6g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802 (Qt override)
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        stripped = text.strip()
        try:
            value = float(stripped)
        except ValueError:
            # Half-typed numbers ("1e-", "-", ".") are fine while typing.
            ok = stripped in ("", "-", "+", ".") or stripped[-1:] in ("e", "E", "-", "+", ".")
            return (QValidator.State.Intermediate if ok else QValidator.State.Invalid), text, pos
        if not math.isfinite(value):
            return QValidator.State.Invalid, text, pos
        if self.minimum() <= value <= self.maximum():
            return QValidator.State.Acceptable, text, pos
        return QValidator.State.Intermediate, text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802 (Qt override)
        if not self._log_step:
            super().stepBy(steps)
            return
        value = self.value()
        if value <= 0:
            value = max(self.minimum(), 1e-4) if steps > 0 else self.minimum()
        else:
            value = float(f"{value * 2.0**steps:.3g}")
        self.setValue(min(max(value, self.minimum()), self.maximum()))
