"""The hyperparameter form: every setting of a `Config`, grouped Model / Data / Training.

A view: `config()` reads the widgets into a Config, `set_config(cfg)` writes one into them (with
signals blocked, so it does not echo back), and `config_changed` / `problems_changed` tell the
window when the user edits something. Problems come from `Config.validate()` and are shown under
the field they concern.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from perceiver_gui.config import (
    DATASETS,
    IMPLEMENTATIONS,
    OPTIMIZERS,
    PRECISIONS,
    PRESETS,
    SCHEDULES,
    Config,
    ConfigError,
    describe_preset,
    load_config,
    save_config,
)
from perceiver_gui.core import datasets as registry
from perceiver_gui.ui.data_preview import DataPreview
from perceiver_gui.ui.fourier_view import FourierView
from perceiver_gui.ui.widgets import FloatSpinBox

__all__ = ["HyperparamsPanel"]


@dataclass(frozen=True)
class _Spec:
    key: str  # dotted config key
    label: str
    tip: str  # one sentence
    kind: str  # int, float, logfloat, bool, choice, device, text, path (a folder), file
    lo: float = 0
    hi: float = 0
    step: float = 1
    choices: tuple[tuple[str, str], ...] = ()  # (value, label)
    at_low: str = ""  # shown instead of the lowest value of an int field, e.g. "off" for 0


# Settings every kind of sample has, whose tips are written of images: said in the kind's words (`in_words_of`).
PER_SAMPLE_TIPS = frozenset({"train.batch_size", "train.mixup", "data.val_fraction", "data.split_seed",
                             "model.cross_heads"})
PREVIEW_TIP = "See the classes, how many images each has, and samples as training sees them, before you start."


def in_words_of(text: str, kind: registry.Kind) -> str:
    """`text`, written of images, said of `kind`'s samples: "Images per step" -> "Series per step"."""
    for old, new in (("images", kind.plural), ("image", kind.noun)):
        text = text.replace(old, new).replace(old.capitalize(), new.capitalize())
    return text


def _c(*values: str) -> tuple[tuple[str, str], ...]:
    return tuple((v, v) for v in values)


MODEL_FIELDS = (
    _Spec("model.num_latents", "Latents (N)", "How many latent vectors read the input; attention memory grows with N × inputs.", "int", 1, 4096),
    _Spec("model.latent_dim", "Latent width (D)", "The width of each latent vector.", "int", 1, 4096, 8),
    _Spec("model.depth", "Depth", "How many cross-attention + latent self-attention blocks are stacked.", "int", 1, 64),
    _Spec("model.self_per_cross_attn", "Self-attention per block", "Latent self-attention layers after each cross-attention.", "int", 1, 16),
    _Spec("model.cross_heads", "Cross-attention heads", "Heads of the cross-attention, where the latents read the image.", "int", 1, 64),
    _Spec("model.cross_dim_head", "Cross head width", "The width of each cross-attention head.", "int", 1, 1024, 8),
    _Spec("model.latent_heads", "Latent heads", "Heads of the latent self-attention.", "int", 1, 64),
    _Spec("model.latent_dim_head", "Latent head width", "The width of each latent self-attention head.", "int", 1, 1024, 8),
    _Spec("model.fourier_encode_data", "Fourier position encoding", "Append Fourier features of each pixel's position to its values; without them the model sees no geometry.", "bool"),
    _Spec("model.num_freq_bands", "Fourier bands", "How many frequency bands encode each axis of the position.", "int", 0, 64),
    _Spec("model.max_freq", "Max frequency", "The highest Fourier frequency; about the image side for full detail.", "float", 0.5, 1000, 1),
    _Spec("model.weight_tie_layers", "Tie block weights", "Share the weights of every block after the first: fewer parameters, same compute.", "bool"),
    _Spec("model.attn_dropout", "Attention dropout", "Dropout on attention outputs while training, 0 to switch it off.", "float", 0, 0.99, 0.05),
    _Spec("model.ff_dropout", "Feed-forward dropout", "Dropout inside the feed-forward layers while training, 0 to switch it off.", "float", 0, 0.99, 0.05),
    _Spec("model.implementation", "Implementation", "'fast' is this app's model; 'reference' is perceiver-pytorch itself (same weights, slower).", "choice", choices=_c(*IMPLEMENTATIONS)),
)

DATA_FIELDS = (
    _Spec("data.dataset", "Dataset", "The images to learn from; Digits is bundled and needs no download.", "choice", choices=tuple((d, registry.DATASETS[d].label) for d in DATASETS)),
    _Spec("data.folder", "Folder", "A folder with one subfolder per class: of images (Image folder), of WAV, FLAC or OGG files (Audio folder), or of meshes and point files (Point clouds).", "path"),
    _Spec("data.train_file", "Series file", "Labelled time series for training: a UCR/UEA .ts file, a CSV (one series a row, with a label column) or X.npy beside y.npy.", "file"),
    _Spec("data.test_file", "Test series file", "Series for the final test, in the same format; empty holds out the test share of the series file.", "file"),
    _Spec("data.ucr_problem", "UCR/UEA problem", "Or a problem of the UCR/UEA archive by name (e.g. GunPoint), used while the series file is empty: its _TRAIN.ts and _TEST.ts are downloaded into the data folder before the first Start.", "text"),
    _Spec("data.label_column", "CSV label column", "Which CSV column holds the labels: first, last or a header's name; empty takes the column named label, else the first.", "text"),
    _Spec("data.crop_to_content", "Crop to the object", "For objects on a plain background (drawings, scans, product shots): cut each one out, centred, filling the frame, so where and how big it was drawn does not matter; the classifier does the same. Photos without a plain border are left as they are.", "bool"),
    _Spec("data.image_size", "Image size", "Folder images are resized to this many pixels on each side; picking a folder sets it from its images.", "int", 4, 512, 4),
    _Spec("data.val_fraction", "Validation share", "The share of each class of the training images held out to choose the best epoch and stop early; the test split is scored once, for the model chosen. 0: no validation, the last epoch is kept.", "float", 0, 0.49, 0.05),
    _Spec("data.split_seed", "Validation seed", "Which images validate; keep it to compare runs with other training seeds on the same validation images.", "int", 0, 2**31 - 1),
    _Spec("data.test_fraction", "Test share", "The share of each class of a folder held out for the final test.", "float", 0.01, 0.99, 0.05),
    _Spec("data.root", "Download folder", "Where downloaded datasets are kept; empty means the app's own data folder.", "path"),
    _Spec("data.download", "Download if missing", "Fetch CIFAR/MNIST from the internet when they are not on disk yet.", "bool"),
    _Spec("data.crop_padding", "Random crop padding", "Augmentation: pad by this many pixels and crop back at a random spot; 0 switches it off.", "int", 0, 16),
    _Spec("data.hflip", "Random horizontal flip", "Augmentation: mirror half the training images (not for digits or text).", "bool"),
    _Spec("data.audio_input", "Audio input", "What the model reads of each clip: log-mel frames over time (the mel bands as channels), a log-mel spectrogram as a 2-D grid, or the raw waveform (the paper's setting: thousands of inputs a second).", "choice",
          choices=(("mel_frames", "Log-mel frames"), ("log_mel", "Log-mel spectrogram (2-D)"), ("waveform", "Raw waveform"))),
    _Spec("data.sample_rate", "Sample rate (Hz)", "Every sound is resampled to this rate; 16,000 keeps speech and most sounds.", "int", 1000, 192000, 1000),
    _Spec("data.clip_seconds", "Clip length (s)", "Each sound's first this many seconds; shorter ones end in silence.", "float", 0.01, 60, 0.1),
    _Spec("data.n_mels", "Mel bands", "Frequency bands of the log-mel spectrogram (25 ms windows every 10 ms); 40–128 is usual.", "int", 1, 256, 8),
    _Spec("data.time_shift", "Random time shift (s)", "Augmentation: shift each training clip by up to this many seconds either way; 0 switches it off.", "float", 0, 60, 0.05),
    _Spec("data.gain_db", "Random gain (dB)", "Augmentation: make each training clip up to this many dB louder or quieter; 0 switches it off.", "float", 0, 40, 1),
    _Spec("data.num_points", "Points per cloud", "Each mesh is sampled to this many points on its surface, each point list subsampled or padded to it; the cross-attention's M.", "int", 16, 65536, 64),
    _Spec("data.rotate", "Random rotation about the up axis", "Augmentation: turn each training cloud by a random angle about z, for shapes whose facing says nothing of their class.", "bool"),
    _Spec("data.jitter", "Point jitter", "Augmentation: Gaussian noise of this σ on every coordinate (the cloud's radius is 1); 0 switches it off.", "float", 0, 0.5, 0.005),
)

TRAIN_FIELDS = (
    _Spec("train.optimizer", "Optimizer", "How the weights follow the gradient; AdamW is the robust choice.", "choice", choices=_c(*OPTIMIZERS)),
    _Spec("train.lr", "Learning rate", "The peak step size; too high diverges, too low learns slowly.", "logfloat", 1e-7, 10),
    _Spec("train.schedule", "LR schedule", "How the learning rate changes over the run.", "choice", choices=_c(*SCHEDULES)),
    _Spec("train.warmup_epochs", "Warmup epochs", "For 'cosine': epochs of linear warmup before the decay.", "float", 0, 10000, 0.5),
    _Spec("train.momentum", "Momentum", "SGD momentum (0 switches it off).", "float", 0, 0.999, 0.05),
    _Spec("train.nesterov", "Nesterov momentum", "Use Nesterov's variant of SGD momentum.", "bool"),
    _Spec("train.weight_decay", "Weight decay", "Pulls weights towards zero to fight overfitting.", "logfloat", 0, 1),
    _Spec("train.batch_size", "Batch size", "Images per step; larger is faster per image but needs more memory.", "int", 1, 65536, 8),
    _Spec("train.epochs", "Epochs", "Passes over the whole training set.", "int", 1, 10000),
    _Spec("train.grad_clip", "Gradient clip", "Clip the gradient norm to this value to tame spikes; 0 switches it off.", "float", 0, 1000, 0.5),
    _Spec("train.label_smoothing", "Label smoothing", "Soften the targets a little so the model is less over-confident.", "float", 0, 0.99, 0.05),
    _Spec("train.mixup", "Mixup", "Blend pairs of images and their labels (Beta parameter, 0.2–0.4 is usual) to fight overfitting; 0 switches it off.", "float", 0, 10, 0.1),
    _Spec("train.device", "Device", "Where to train: auto picks a GPU when there is one.", "device", choices=_c("auto", "cpu", "cuda", "mps")),
    _Spec("train.precision", "Precision", "Number format for the forward pass; bfloat16/float16 are faster on GPUs.", "choice", choices=_c(*PRECISIONS)),
    _Spec("train.early_stop_patience", "Early stopping", "Stop after this many epochs without a better validation accuracy; 0 switches it off.", "int", 0, 10000,
          at_low="off"),
    _Spec("train.seed", "Seed", "The same seed repeats a CPU run exactly.", "int", 0, 2**31 - 1),
    _Spec("train.threads", "CPU threads", "Threads for CPU training; 0 uses all cores but one.", "int", 0, 1024),
    _Spec("train.processes", "Processes / GPUs", "Train data-parallel in this many processes, one per GPU (or a few on a CPU); the batch is split over them.", "int", 1, 1024),
    _Spec("train.log_every", "Log every (steps)", "How often a step is written to the run's metrics file.", "int", 1, 100000, 10),
)

DERIVED = ("input_channels", "input_axis", "num_classes", "positions")


class _Field:
    """One editor bound to one dotted key."""

    def __init__(self, spec: _Spec, on_change: Callable[[str], None], parent: QWidget):
        self.spec = spec
        kind = spec.kind

        def changed(*_: object) -> None:
            on_change(spec.key)

        self.browse: QToolButton | None = None
        if kind == "int":
            w = QSpinBox(parent)
            w.setRange(int(spec.lo), int(spec.hi))
            w.setSingleStep(int(spec.step))
            w.setSpecialValueText(spec.at_low)
            w.valueChanged.connect(changed)
        elif kind in ("float", "logfloat"):
            w = FloatSpinBox(minimum=spec.lo, maximum=spec.hi, step=spec.step, log_step=kind == "logfloat", parent=parent)
            w.valueChanged.connect(changed)
        elif kind == "bool":
            w = QCheckBox(parent)
            w.toggled.connect(changed)
        elif kind in ("choice", "device"):
            w = QComboBox(parent)
            for value, label in spec.choices:
                w.addItem(label, value)
            if kind == "device":
                # Editable so "cuda:1" can be typed.
                w.setEditable(True)
                w.editTextChanged.connect(changed)
            else:
                w.currentIndexChanged.connect(changed)
        else:  # text, path
            w = QLineEdit(parent)
            w.textChanged.connect(changed)
            if kind in ("path", "file"):
                w.setPlaceholderText("app data folder" if spec.key == "data.root" else
                                     "choose a folder…" if kind == "path" else "choose a file…")
                self.browse = QToolButton(parent)
                self.browse.setText("…")
                self.browse.setToolTip("Choose a folder" if kind == "path" else "Choose a file")
                self.browse.clicked.connect(self._choose_folder if kind == "path" else self._choose_file)
        self.tip = spec.tip  # spec.tip in the words of the dataset's kind of sample (`speak_of`)
        self.problem = ""
        self.label: QLabel | None = None
        w.setToolTip(self.tip)
        w.setObjectName(spec.key)
        self.widget = w
        self.error = QLabel(parent)
        self.error.setWordWrap(True)
        self.error.setObjectName("fieldError")
        self.error.setStyleSheet("color: #d03030;")
        self.error.hide()

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.widget, self.spec.label, self.widget.text())
        if folder:
            self.widget.setText(folder)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.widget, self.spec.label, self.widget.text(),
                                              "Time series (*.ts *.csv *.tsv *.npy);;All files (*)")
        if path:
            self.widget.setText(path)

    def get(self) -> Any:
        w = self.widget
        if isinstance(w, QSpinBox | FloatSpinBox):
            return w.value()
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QComboBox):
            if w.isEditable():
                return w.currentText().strip()
            return w.currentData()
        return w.text()

    def set(self, value: Any) -> None:
        w = self.widget
        if isinstance(w, QSpinBox | FloatSpinBox):
            w.setValue(value)
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, QComboBox):
            index = w.findData(value)
            if index < 0:
                # A value from a file that the form does not offer: show it, so validation can flag it.
                w.addItem(str(value), value)
                index = w.count() - 1
            w.setCurrentIndex(index)
            if w.isEditable():
                w.setEditText(str(value))
        else:
            w.setText(str(value))

    def show_problem(self, sentence: str) -> None:
        self.problem = sentence
        self.error.setText(sentence)
        self.error.setVisible(bool(sentence))
        self.widget.setToolTip(self.tip + (f"\n\n⚠ {sentence}" if sentence else ""))

    def speak_of(self, kind: registry.Kind) -> None:
        """Say the tip of a setting every kind of sample has in the words of `kind` ("Series per step")."""
        if self.spec.key in PER_SAMPLE_TIPS:
            self.tip = in_words_of(self.spec.tip, kind)
            self.show_problem(self.problem)
            if self.label is not None:
                self.label.setToolTip(self.tip)


class HyperparamsPanel(QWidget):
    """Preset picker, open/save, and the Model / Data / Training settings."""

    config_changed = Signal(object)  # Config, after every edit
    problems_changed = Signal(object)  # list[(dotted key, sentence)]
    message = Signal(str)  # a sentence for the status bar (opened, saved, could not read …)

    def __init__(self, cfg: Config | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self._derived = {name: getattr(Config().model, name) for name in DERIVED}
        self._problems: list[tuple[str, str]] = []
        self._fields: dict[str, _Field] = {}
        self._editable = True  # False while a run trains (set_editable)

        top = QHBoxLayout()
        top.addWidget(QLabel("Preset"))
        self.preset_box = QComboBox()
        self.preset_box.setToolTip("Start from a named configuration; every value can be changed afterwards.")
        self.preset_box.addItem("(custom)", "")
        for name in PRESETS:
            self.preset_box.addItem(name, name)
        self.preset_box.activated.connect(self._apply_preset)
        top.addWidget(self.preset_box, 1)
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip("Load settings from a .toml or .json file.")
        self.open_button.clicked.connect(self.open_dialog)
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("Save these settings as a .toml or .json file.")
        self.save_button.clicked.connect(self.save_dialog)
        top.addWidget(self.open_button)
        top.addWidget(self.save_button)

        name_row = QHBoxLayout()
        name_row.addWidget(QLabel("Run name"))
        self.name_edit = QLineEdit()
        self.name_edit.setObjectName("name")
        self.name_edit.setToolTip("Shown in the runs list and used for the run's folder name.")
        self.name_edit.textChanged.connect(lambda *_: self._edited("name"))
        name_row.addWidget(self.name_edit, 1)

        self.preset_note = QLabel()
        self.preset_note.setObjectName("presetNote")
        self.preset_note.setWordWrap(True)
        self.preset_note.setEnabled(False)  # the palette's dimmed colour: an explanation, not a setting

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self._tab_titles = ("Model", "Data", "Training")
        for title, specs in zip(self._tab_titles, (MODEL_FIELDS, DATA_FIELDS, TRAIN_FIELDS), strict=True):
            self.tabs.addTab(self._build_page(specs, derived=title == "Model"), title)

        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setStyleSheet("color: #d03030;")
        self.summary.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.preset_note)
        layout.addLayout(name_row)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.summary)
        self.setMinimumWidth(330)

        self.set_config(cfg if cfg is not None else PRESETS["digits"])

    # -- building -----------------------------------------------------------------------------
    def _build_page(self, specs: tuple[_Spec, ...], *, derived: bool) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        for spec in specs:
            field = _Field(spec, self._edited, page)
            self._fields[spec.key] = field
            label = QLabel(spec.label)
            label.setToolTip(spec.tip)
            field.label = label
            label.setBuddy(field.widget)
            if field.browse is not None:
                row = QHBoxLayout()
                row.setContentsMargins(0, 0, 0, 0)
                row.addWidget(field.widget, 1)
                row.addWidget(field.browse)
                form.addRow(label, row)
            else:
                form.addRow(label, field.widget)
            form.addRow(field.error)
            if spec.key == "data.dataset":
                # The dataset's own recipe, offered when the form holds edits that picking it would lose.
                self.recipe_button = QPushButton(page)
                self.recipe_button.setObjectName("recipeButton")
                self.recipe_button.clicked.connect(self.apply_dataset_recipe)
                self.recipe_button.hide()
                form.addRow(self.recipe_button)
            if spec.key == DATA_FIELDS[-1].key:  # under the last data setting
                self.preview_button = QPushButton("Preview data…", page)
                self.preview_button.setToolTip(PREVIEW_TIP)
                self.preview_button.clicked.connect(self.open_preview)
                form.addRow(self.preview_button)
            if spec.key == "model.max_freq":
                # What the Fourier settings add and look like, right under them.
                self.fourier = FourierView(page)
                form.addRow(self.fourier)
        if derived:
            self.derived_label = QLabel()
            self.derived_label.setObjectName("derived")
            self.derived_label.setWordWrap(True)
            self.derived_label.setToolTip("These come from the dataset and cannot be edited here.")
            self.derived_label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
            form.insertRow(0, QLabel("Input (from data)"), self.derived_label)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(page)
        return scroll

    # -- the typed API -------------------------------------------------------------------------
    def config(self) -> Config:
        raw: dict[str, Any] = {"name": self.name_edit.text(), "model": dict(self._derived), "data": {}, "train": {}}
        for key, field in self._fields.items():
            section, leaf = key.split(".")
            raw[section][leaf] = field.get()
        return Config.from_dict(raw)

    def set_config(self, cfg: Config) -> None:
        # Qt's QSignalBlocker, not superqt.signals_blocked: importing superqt costs ~0.16 s, which the
        # launch should not spend before the window shows (it is imported when a worker first starts).
        with QSignalBlocker(self.name_edit):
            self.name_edit.setText(cfg.name)
        for key, field in self._fields.items():
            section, leaf = key.split(".")
            with QSignalBlocker(field.widget):
                field.set(getattr(getattr(cfg, section), leaf))
        self._derived = {name: getattr(cfg.model, name) for name in DERIVED}
        self._sync_preset(cfg)
        self._refresh()

    def problems(self) -> list[tuple[str, str]]:
        return list(self._problems)

    def field(self, key: str) -> QWidget:
        """The editor of a dotted key (for the window's focus-on-problem and for tests)."""
        return self._fields[key].widget

    def set_editable(self, editable: bool) -> None:
        """While a run trains, its settings are fixed: the fields cannot be changed, but the tabs can
        still be browsed (and the Fourier plot opened) to see what the run uses."""
        self._editable = editable
        for widget in (self.preset_box, self.open_button, self.name_edit):
            widget.setEnabled(editable)
        for field in self._fields.values():
            field.widget.setEnabled(editable)
            if field.browse is not None:
                field.browse.setEnabled(editable)
        if editable:
            self._refresh()  # fields that do not apply (momentum without SGD, ...) stay greyed

    def open_preview(self) -> DataPreview:
        """Open the dataset preview for the current data settings (non-modal)."""
        preview = DataPreview(self.config().data, self)
        preview.show()
        preview.load()
        return preview

    # -- files ---------------------------------------------------------------------------------
    def open_file(self, path: str | Path) -> bool:
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            self.message.emit(str(exc))
            return False
        self.set_config(cfg)
        self.message.emit(f"Opened {Path(path).name}.")
        return True

    def save_file(self, path: str | Path) -> bool:
        try:
            save_config(self.config(), path)
        except (ConfigError, OSError) as exc:
            self.message.emit(f"Could not save {Path(path).name}: {exc}")
            return False
        self.message.emit(f"Saved {Path(path).name}.")
        return True

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open settings", "", "Settings (*.toml *.json);;All files (*)")
        if path:
            self.open_file(path)

    def save_dialog(self) -> None:
        name = (self.name_edit.text().strip() or "experiment") + ".toml"
        path, _ = QFileDialog.getSaveFileName(self, "Save settings", name, "TOML (*.toml);;JSON (*.json)")
        if path:
            if not Path(path).suffix:
                path += ".toml"
            self.save_file(path)

    # -- reacting to edits ---------------------------------------------------------------------
    def _apply_preset(self, index: int) -> None:
        name = self.preset_box.itemData(index)
        if name:
            self.set_config(PRESETS[name])
            self.config_changed.emit(self.config())

    def apply_dataset_recipe(self) -> None:
        """Replace the settings with the preset of the chosen dataset, keeping where the data is."""
        current = self.config()
        recipe = PRESETS[registry.DATASETS[current.data.dataset].preset]
        cfg = recipe.with_updates({"data.root": current.data.root, "data.folder": current.data.folder,
                                   "data.train_file": current.data.train_file, "data.test_file": current.data.test_file,
                                   "data.label_column": current.data.label_column,
                                   "data.ucr_problem": current.data.ucr_problem})
        self.set_config(cfg)
        if cfg.data.dataset == "folder":
            self._follow_folder()
        self.config_changed.emit(self.config())

    def _edited(self, key: str) -> None:
        if key == "data.dataset" and self._preset_in_use:
            # An untouched preset: picking a dataset brings its recipe; edits are never replaced unasked.
            self.apply_dataset_recipe()
            return
        if key == "data.folder" and self._fields["data.dataset"].get() == "folder":
            self._follow_folder()
        elif key == "data.image_size":
            self._follow_image_size(self._last.data.image_size)
        self._refresh()
        self._sync_preset(self.config())
        self.config_changed.emit(self.config())

    def _follow_folder(self) -> None:
        """A folder's images decide the image size (and with it the max frequency)."""
        folder = self._fields["data.folder"].get()
        side = registry.folder_image_size(folder)
        if side is None:
            return
        old = self._fields["data.image_size"].get()
        self._set_quietly("data.image_size", side)
        self._follow_image_size(old)
        self.message.emit(f"Image size set to {side} px from the images in {Path(folder).name} "
                          f"(their median side, at most {registry.FOLDER_SIZE_CAP} px).")

    def _follow_image_size(self, old_side: int) -> None:
        """Max frequency follows the image size while it followed the old one, or when it would alias."""
        side = self._fields["data.image_size"].get()
        max_freq = self._fields["model.max_freq"].get()
        if max_freq == registry.max_freq_for(old_side) or max_freq > side - 1:
            self._set_quietly("model.max_freq", registry.max_freq_for(side))

    def _set_quietly(self, key: str, value: Any) -> None:
        field = self._fields[key]
        with QSignalBlocker(field.widget):
            field.set(value)

    @property
    def _preset_in_use(self) -> bool:
        return bool(self.preset_box.currentData())

    def _sync_preset(self, cfg: Config) -> None:
        match = next((name for name, p in PRESETS.items() if _recipe_part(p) == _recipe_part(cfg)), "")
        with QSignalBlocker(self.preset_box):
            self.preset_box.setCurrentIndex(max(0, self.preset_box.findData(match)))
        dataset = cfg.data.dataset
        self.preset_note.setText(describe_preset(match) if match else registry.download_note(dataset))
        self.preset_note.setVisible(bool(self.preset_note.text()))
        recipe = registry.DATASETS[dataset].preset if dataset in registry.DATASETS else ""
        self.recipe_button.setText(f"Use the {recipe} preset, tuned for this dataset")
        self.recipe_button.setToolTip(describe_preset(recipe) if recipe else "")
        self.recipe_button.setVisible(bool(recipe) and match != recipe)

    def _refresh(self) -> None:
        """Derived values, which fields apply, and the problems, after any change."""
        cfg = self.config()
        self._last = cfg
        shape = registry.expected_input(cfg.data)
        model = registry.fit_model(cfg.model, shape)
        self._derived = {name: getattr(model, name) for name in DERIVED}
        kind = registry.KINDS[shape.kind]
        for field in self._fields.values():
            field.speak_of(kind)
        self.preview_button.setToolTip(in_words_of(PREVIEW_TIP, kind))
        channels = f"{shape.channels} channel{'s' if shape.channels != 1 else ''}" if shape.channels else \
            "1 or 3 channels (from the images)"
        classes = f"{shape.classes} classes" if shape.classes else "? classes"
        if cfg.data.dataset in ("folder", "audio_folder", "points_folder"):
            classes += " (subfolders)"
        sides = "×".join(str(n) for n in shape.sides)
        if shape.kind == "series":
            length = f"{shape.sides[0]:,} steps" if shape.channels else "? steps"
            self.derived_label.setText(f"{channels if shape.channels else '? channels'} · {length} · {classes}")
        elif shape.kind == "points":
            self.derived_label.setText(f"x, y, z · {shape.sides[0]:,} points a cloud · {classes}")
        elif shape.kind == "audio":
            self.derived_label.setText(f"{_sound_input(cfg.data, shape.sides)} · {classes}")
        else:
            self.derived_label.setText(f"{channels} · {sides} pixels · {classes}")
        self.fourier.set_encoding(enabled=model.fourier_encode_data, num_bands=model.num_freq_bands,
                                  max_freq=model.max_freq, sides=shape.sides, input_axis=model.input_axis,
                                  kind=shape.kind)

        is_folder = cfg.data.dataset == "folder"
        is_series = cfg.data.dataset == "sequences"
        is_audio = registry.kind_of(cfg.data.dataset) is registry.KINDS["audio"]  # a folder of sounds, or a download
        is_sound_folder = cfg.data.dataset == "audio_folder"
        is_points = registry.kind_of(cfg.data.dataset) is registry.KINDS["points"]  # a folder of clouds, or a download
        is_points_folder = cfg.data.dataset == "points_folder"
        spec = registry.DATASETS.get(cfg.data.dataset)
        downloads = spec is not None and spec.downloads
        applies = {
            "data.folder": is_folder or is_sound_folder or is_points_folder,
            "data.image_size": is_folder,
            "data.crop_to_content": is_folder,
            "data.test_fraction": is_folder or is_sound_folder or is_points_folder or (is_series and not cfg.data.test_file.strip()),
            **{key: is_audio for key in ("data.audio_input", "data.sample_rate", "data.clip_seconds",
                                         "data.time_shift", "data.gain_db")},
            "data.n_mels": is_audio and cfg.data.audio_input != "waveform",
            **{key: is_points for key in ("data.num_points", "data.rotate", "data.jitter")},
            "data.crop_padding": not (is_audio or is_points),  # image augmentations; sounds and clouds have their own
            "data.hflip": not (is_audio or is_points),
            "data.train_file": is_series,
            "data.test_file": is_series,
            "data.label_column": is_series,
            "data.ucr_problem": is_series,
            "data.root": downloads,
            "data.download": downloads,
        }
        applies["train.momentum"] = cfg.train.optimizer == "sgd"
        applies["train.early_stop_patience"] = cfg.data.val_fraction > 0
        applies["train.warmup_epochs"] = cfg.train.schedule == "cosine"
        applies["model.num_freq_bands"] = self._fields["model.fourier_encode_data"].get()
        applies["model.max_freq"] = applies["model.num_freq_bands"]
        for key, on in applies.items():
            field = self._fields[key]
            field.widget.setEnabled(on and self._editable)
            if field.browse is not None:
                field.browse.setEnabled(on and self._editable)

        try:
            problems = self.config().validate()
        except ConfigError as exc:  # a value the form cannot even express; should not happen
            problems = [("", str(exc))]
        self._show_problems(problems)

    def _show_problems(self, problems: list[tuple[str, str]]) -> None:
        by_key: dict[str, str] = {}
        for key, sentence in problems:
            by_key.setdefault(key, sentence)
        for key, field in self._fields.items():
            field.show_problem(by_key.get(key, ""))
        for i, title in enumerate(self._tab_titles):
            section = {"Model": "model.", "Data": "data.", "Training": "train."}[title]
            bad = any(k.startswith(section) for k in by_key)
            self.tabs.setTabText(i, f"{title} ⚠" if bad else title)
        unplaced = [s for k, s in problems if k not in self._fields]
        self.summary.setText("\n".join(unplaced))
        self.summary.setVisible(bool(unplaced))
        if problems != self._problems:
            self._problems = list(problems)
            self.problems_changed.emit(self.problems())



def _recipe_part(cfg: Config) -> Config:
    """What makes a config its preset: not where the data lives, nor what follows the data (the input
    shape, a folder's image size, and a max frequency that follows the image size)."""
    side = registry.expected_input(replace(cfg.data, folder="", train_file="", test_file="")).sides[0]
    follows = cfg.model.max_freq == registry.max_freq_for(side)
    return replace(
        cfg,
        model=replace(cfg.model, input_channels=0, input_axis=0, num_classes=0,
                      max_freq=-1.0 if follows else cfg.model.max_freq),
        data=replace(cfg.data, root="", folder="", train_file="", test_file="", label_column="", image_size=0 if cfg.data.dataset == "folder" else cfg.data.image_size),
    )


def _sound_input(data, sides: tuple[int, ...]) -> str:
    """What the model reads of each clip, with its size M (the inputs the latents attend to)."""
    clip = f"{data.clip_seconds:g} s at {data.sample_rate:,} Hz"
    if data.audio_input == "waveform":
        return f"{clip} · {sides[0]:,} samples"
    if data.audio_input == "log_mel":
        return f"{clip} · {sides[0]} mels × {sides[1]} frames = {sides[0] * sides[1]:,} inputs"
    return f"{clip} · {sides[0]} frames of {data.n_mels} mel bands"
