"""The plotting toolkit's helpers on their own (tests/ui/test_plots.py has them inside the live plots)."""

import numpy as np
import pyqtgraph as pg
import pytest

from perceiver_gui.ui.plotting import BLUE, add_plot, along, clear_spot, ema, legend_in_title_row, rgb_pen, scale_pens


def test_ema_matches_the_step_by_step_definition():
    rng = np.random.default_rng(1)
    values = rng.random(5000) * 3 + np.linspace(5, 0, 5000)
    for weight in (0.0, 0.01, 0.5, 0.9, 0.99):
        acc, expected = 0.0, []
        for i, v in enumerate(values):
            acc = acc * weight + (1 - weight) * v
            expected.append(acc / (1 - weight ** (i + 1)) if weight > 0 else v)
        np.testing.assert_allclose(ema(values, weight), expected, rtol=1e-10)


def test_a_legend_in_the_title_row_stays_off_the_curves(qtbot):
    graphics = pg.GraphicsLayoutWidget()
    qtbot.addWidget(graphics)
    plot = add_plot(graphics, title="Loss")
    legend = legend_in_title_row(plot)
    for name in ("train (raw)", "train (smoothed)", "validation"):
        plot.plot([0, 1, 2], [3, 2, 1], name=name)
    graphics.resize(700, 300)
    graphics.show()
    qtbot.waitExposed(graphics)
    graphics.scene().prepareForPaint()
    shown = legend.sceneBoundingRect()
    assert shown.width() > 0 and [label.text for _, label in legend.items] == ["train (raw)", "train (smoothed)",
                                                                            "validation"]
    assert not shown.intersects(plot.getViewBox().sceneBoundingRect())  # where the curves are drawn
    assert shown.left() > plot.titleLabel.sceneBoundingRect().left()  # beside the title, to its right


def test_pens_are_as_thick_on_screen_at_2x_scaling():
    curve = pg.PlotDataItem([0, 1], [0, 1], pen=rgb_pen(BLUE, 1.5))
    line = pg.InfiniteLine(pen=pg.mkPen(BLUE, width=1.5))
    widths = ((curve, 1.5), (line, 1.5))
    scale_pens(widths, 2.0)
    assert curve.opts["pen"].widthF() == 3.0 and line.pen.widthF() == 3.0  # device pixels: 1.5 on screen
    scale_pens(widths, 1.0)  # moved back to a 1× screen
    assert curve.opts["pen"].widthF() == 1.5 and line.pen.widthF() == 1.5


def test_a_label_takes_the_first_spot_no_line_runs_through():
    from PySide6.QtCore import QRectF

    bounds = QRectF(0, 0, 200, 100)
    line = along(np.array([[0.0, 0.0], [200.0, 100.0]]))  # corner to corner, points ≤ 2 px apart
    assert np.all(np.hypot(*np.diff(line, axis=0).T) <= 2.0 + 1e-9) and tuple(line[-1]) == (200.0, 100.0)
    on_line, outside, clear = QRectF(90, 40, 20, 20), QRectF(190, 0, 20, 10), QRectF(150, 5, 40, 10)
    assert clear_spot([on_line, outside, clear], line, bounds, margin=4) == clear
    # Nowhere clear: the spot the line crosses least, within the bounds.
    across = QRectF(0, 0, 200, 100)
    assert clear_spot([across, on_line], line, bounds, margin=4) == on_line


def _plot_widget(name):
    if name == "plots":
        from perceiver_gui.ui.plots import PlotsPanel

        return PlotsPanel(), lambda w: w.smooth_curve.opts["pen"].widthF(), 2.2
    if name == "compare":
        from perceiver_gui.ui.compare_view import CompareView

        return CompareView(), None, None
    from perceiver_gui.ui.sweep_plots import SweepPlots

    return SweepPlots(), lambda w: w.best_curve.opts["pen"].widthF(), 2.0


@pytest.mark.parametrize("name", ["plots", "compare", "sweep"])
def test_plots_follow_a_dark_palette_and_a_screen_of_another_scale(qtbot, monkeypatch, name):
    """The training plots, the comparison and the sweep's plots restyle when the desktop turns dark, and keep
    their lines as thick on screen when the window moves to a 2× screen."""
    from PySide6.QtCore import QCoreApplication, QEvent
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QVBoxLayout, QWidget

    window = QWidget()
    qtbot.addWidget(window)
    widget, width, at_1x = _plot_widget(name)
    QVBoxLayout(window).addWidget(widget)
    window.show()
    qtbot.waitExposed(window)
    dark = QPalette(window.palette())
    dark.setColor(QPalette.ColorRole.Base, QColor(30, 30, 30))
    dark.setColor(QPalette.ColorRole.Text, QColor(230, 230, 230))
    window.setPalette(dark)
    assert widget.graphics.backgroundBrush().color() == QColor(30, 30, 30)
    plot = widget.acc_plot if name != "sweep" else widget.best_plot
    assert plot.getAxis("left").textPen().color() == QColor(230, 230, 230)
    if width is None:
        return  # the comparison's curves come with runs (tests/ui/test_compare.py checks them at 2×)
    assert width(widget) == at_1x
    monkeypatch.setattr(widget, "devicePixelRatioF", lambda: 2.0, raising=False)
    QCoreApplication.sendEvent(widget, QEvent(QEvent.Type.DevicePixelRatioChange))
    assert width(widget) == 2 * at_1x  # device pixels
