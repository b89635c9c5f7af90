"""Help › Guide: what each tab does, the keyboard shortcuts (read from the window's own actions, so the
list cannot drift from them), and a link to the README."""

from __future__ import annotations

from html import escape
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

__all__ = ["GuideDialog", "README"]

README = Path(__file__).resolve().parents[2] / "README.md"  # in a checkout; a wheel does not install it

TABS = (
    ("Settings (left)", "The model, data and training settings, with the model's size and cost below them. "
                        "Pick a preset to start from; File › Save settings keeps your own."),
    ("Training", "Start, pause and stop a run; its loss, accuracy and learning rate live; the run's log."),
    ("Classifier", "Drop a .safetensors model, then what it reads: images, sounds (.wav/.flac/.ogg), series "
                   "(.ts/.csv/.npy) or point clouds (meshes, .xyz), or folders of them; each gets its most likely "
                   "classes, and Attention shows where the model looked."),
    ("Runs", "Every run in the runs folder: its curves, resume a stopped one, rename, delete, open its model. "
             "Ctrl- or Shift-click several to compare them; runs that differ only by seed are shown as their "
             "mean ± standard deviation."),
    ("Mistakes", "The confusion matrix of a run's latest epoch; click a cell to see the validation images (or "
                 "series) behind it. The saved model is the run's best epoch on validation: when that was an "
                 "earlier one, the header names both epochs."),
    ("Queue", "Runs waiting to train one after another (Training › Add to queue, K seeds at once): reorder, "
              "remove, pause. It is kept when the app quits; Stop pauses it, a failed run is marked and skipped."),
    ("Sweep", "Tick the settings to vary and let Optuna search them: each trial is a run; watch the best so far, "
              "the trials and which settings matter, and open any trial's run."),
)


class GuideDialog(QDialog):
    def __init__(self, actions: list[QAction], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Perceiver GUI guide")
        self.resize(600, 640)  # grown in showEvent until the whole guide shows
        self.text = QTextBrowser()
        self.text.setOpenExternalLinks(True)
        self.text.setHtml(guide_html(actions))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().showEvent(event)
        # Grow until nothing is left to scroll (its last lines were cut off at a fixed 640 px), within the screen.
        limit = self.screen().availableGeometry().height() - 60 if self.screen() is not None else self.height()
        for _ in range(4):  # a taller view can lose its scroll bar and rewrap: settle in a few rounds
            extra = self.text.verticalScrollBar().maximum()
            if extra <= 0 or self.height() >= limit:
                break
            self.resize(self.width(), min(self.height() + extra + 4, limit))
            self.layout().activate()


def guide_html(actions: list[QAction]) -> str:
    tabs = "".join(f"<dt><b>{escape(name)}</b></dt><dd>{escape(text)}</dd>" for name, text in TABS)
    keys = []
    for action in actions:
        shortcuts = [s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts() if not s.isEmpty()]
        if shortcuts:
            keys.append(f"<tr><td>{escape(action.text().replace('&', '').rstrip('…'))}</td>"
                        f"<td><b>{escape(' or '.join(shortcuts))}</b></td></tr>")
    keys.append("<tr><td>Paste images into the classifier</td><td><b>"
                f"{escape(QKeySequence(QKeySequence.StandardKey.Paste).toString(QKeySequence.SequenceFormat.NativeText))}"
                "</b></td></tr>")
    if README.is_file():
        more = f"<p>More in the <a href='{QUrl.fromLocalFile(str(README)).toString()}'>README</a>.</p>"
    else:
        more = "<p>More in the project's README, and <code>perceiver-gui --help</code> for the command line.</p>"
    return (f"<h3>The tabs</h3><dl>{tabs}</dl><h3>Keyboard shortcuts</h3>"
            f"<table cellspacing='4'>{''.join(keys)}</table>{more}"
            "<p>The mouse wheel changes a field only after you click into it; elsewhere it scrolls.</p>")
