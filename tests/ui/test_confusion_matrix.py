"""The self-painting confusion matrix on its own (tests/ui/test_mistakes.py has it inside the Mistakes tab)."""

from PySide6.QtCore import QPoint
from PySide6.QtGui import QColor, QPalette

from perceiver_gui.ui.confusion_matrix import ConfusionView


def test_in_a_dark_palette_the_matrix_is_dark_too(qtbot):
    view = ConfusionView()
    dark = QPalette()
    for role, colour in ((QPalette.ColorRole.Window, "#202124"), (QPalette.ColorRole.Base, "#1b1b1d"),
                         (QPalette.ColorRole.Text, "#e8e8e8"), (QPalette.ColorRole.WindowText, "#e8e8e8")):
        dark.setColor(role, QColor(colour))
    view.setPalette(dark)
    view.resize(500, 400)
    qtbot.addWidget(view)
    view.set_matrix(((50, 1, 0), (0, 40, 12), (0, 0, 45)), ("a", "b", "c"))
    image = view.grab().toImage()
    # An empty cell and the faintest mistake: on a dark background neither may glare white.
    def colour(true, pred):  # inside the cell, off its number
        return image.pixelColor(view.cell_rect(true, pred).topLeft().toPoint() + QPoint(4, 4))

    for true, pred in ((0, 2), (0, 1)):
        assert colour(true, pred).lightnessF() < 0.5, (true, pred, colour(true, pred).name())
    # The strongest cells still stand out from the background.
    diagonal = colour(0, 0)
    assert abs(diagonal.lightnessF() - QColor("#1b1b1d").lightnessF()) > 0.15
