"""A live readout of what a config costs: parameters, FLOPs per image and attention sizes."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

from perceiver_gui.config import Config
from perceiver_gui.core.complexity import attention_sizes, flops_per_sample, parameter_count
from perceiver_gui.core.datasets import KINDS, expected_input, input_positions

__all__ = ["ComplexityView", "si"]


def si(value: float) -> str:
    """1234567 -> '1.23 M': numbers a person can compare at a glance."""
    for factor, suffix in ((1e12, " T"), (1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


class ComplexityView(QFrame):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.cost = QLabel()
        self.cost.setObjectName("cost")
        self.attention = QLabel()
        self.attention.setObjectName("attention")
        self.note = QLabel()
        self.note.setObjectName("note")
        self.note.setEnabled(False)  # the dimmed colour of the palette, for the explanatory line
        for label in (self.cost, self.attention, self.note):
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cost.setToolTip("Trainable parameters, and forward-pass floating point operations for one image.")
        self.attention.setToolTip(
            "Entries of the attention matrices: the latents reading the input (M×N), the latents among "
            "themselves (N²), and what a plain transformer over all M inputs would need (M²)."
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(2)
        layout.addWidget(self.cost)
        layout.addWidget(self.attention)
        layout.addWidget(self.note)

    def set_config(self, cfg: Config) -> None:
        shape = expected_input(cfg.data)
        kind = KINDS[shape.kind]
        spatial, noun = shape.sides, kind.noun
        if cfg.validate():
            # Sizes of an impossible model would mislead; the form already says what is wrong.
            self.cost.setText("Parameters and FLOPs appear once the settings are valid.")
            self.attention.setText("")
            self.note.setText("")
            return
        params = parameter_count(cfg.model)
        flops = flops_per_sample(cfg.model, spatial)
        sizes = attention_sizes(cfg.model, spatial)
        self.cost.setText(f"<b>{si(params)}</b> parameters · <b>{si(flops)}FLOPs</b> per {noun}")
        self.attention.setText(
            f"Attention (M = {input_positions(cfg.data, shape)}): "
            f"cross M×N = {sizes.M:,}×{sizes.N:,} = <b>{si(sizes.cross)}</b> · "
            f"latent N² = <b>{si(sizes.latent)}</b> · plain transformer M² = <b>{si(sizes.transformer)}</b>"
        )
        self.note.setText(sizes.note(noun))
