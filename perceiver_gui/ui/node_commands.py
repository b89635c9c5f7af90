"""The commands that train the form's settings on several machines: one per machine, to copy into a terminal
there (a window on one machine cannot start processes on another)."""

from __future__ import annotations

import socket

from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from perceiver_gui.cli import node_commands
from perceiver_gui.config import Config

__all__ = ["NodeCommandsDialog"]


class NodeCommandsDialog(QDialog):
    def __init__(self, cfg: Config, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Train on several machines")
        self.resize(760, 420)
        self.machines = QSpinBox(minimum=2, maximum=1024, value=2)
        self.processes = QSpinBox(minimum=1, maximum=1024, value=max(1, cfg.train.processes))
        self.endpoint = QLineEdit(f"{socket.gethostname()}:29500")
        self.config_file = QLineEdit(f"{cfg.name or 'experiment'}.toml")
        self.out = QLineEdit(f"runs/{cfg.name or 'experiment'}")
        form = QFormLayout()
        form.addRow("Machines", self.machines)
        form.addRow("Processes per machine (GPUs)", self.processes)
        form.addRow("Machine 0's address:port", self.endpoint)
        form.addRow("Settings file", self.config_file)
        form.addRow("Run folder (on machine 0)", self.out)
        note = QLabel("Save these settings with File ▸ Save settings… under the file name above and copy the file "
                      "(and the dataset) to every machine; then run each line on its machine, machine 0 first. "
                      "Machine 0 writes the run folder; the run shows on its Runs tab.")
        note.setWordWrap(True)
        self.text = QPlainTextEdit(readOnly=True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)  # a command broken mid-flag misleads
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        copy = QPushButton("Copy")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.text.toPlainText()))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)
        for spin in (self.machines, self.processes):
            spin.valueChanged.connect(self._update)
        for edit in (self.endpoint, self.config_file, self.out):
            edit.textChanged.connect(self._update)
        self._update()

    def commands(self) -> list[str]:
        return node_commands(self.config_file.text().strip(), nnodes=self.machines.value(),
                             nproc_per_node=self.processes.value(), endpoint=self.endpoint.text().strip(),
                             out=self.out.text().strip())

    def _update(self) -> None:
        lines = []
        for rank, command in enumerate(self.commands()):
            lines += [f"# machine {rank}", command, ""]
        self.text.setPlainText("\n".join(lines).rstrip() + "\n")
