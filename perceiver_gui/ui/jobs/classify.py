"""The classifier's work in its workers: loading a model, and predicting what was dropped, each result with
a thumbnail (the image, or a picture of the sound, series or point cloud the model read)."""

from __future__ import annotations

import io
from collections.abc import Generator
from pathlib import Path

from PIL import Image, ImageOps
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QImageReader

from perceiver_gui.core.audio import AudioError, audio_files
from perceiver_gui.core.checkpoints import accuracy_text
from perceiver_gui.core.images import image_files
from perceiver_gui.core.inference import Prediction, Predictor
from perceiver_gui.core.points import PointsError, point_files
from perceiver_gui.core.reading import POINT_SUFFIXES, SERIES_SUFFIXES, SOUND_SUFFIXES
from perceiver_gui.core.runs import RUN_FILE
from perceiver_gui.core.series import SeriesError, read_series
from perceiver_gui.ui.classifier_panel import CHUNK, THUMB, Source
from perceiver_gui.ui.jobs.attention import compute_attention
from perceiver_gui.ui.runs_panel import run_name
from perceiver_gui.ui.widgets import points_image, series_image, sound_image

__all__ = ["compute_attention", "load", "load_predictor", "predict"]  # compute_attention: for an entry's dialog

Result = tuple[Source, Prediction, QImage]


def load(path: str) -> tuple[Predictor, str, str]:
    """The Predictor of a model file, the name of its run and the accuracy it was saved with, in words."""
    predictor, name = load_predictor(path)
    return predictor, name, accuracy_text(predictor.meta.summary)


def load_predictor(path: str) -> tuple[Predictor, str]:
    """The Predictor of a model file and the name of its run (see `_model_name`)."""
    predictor = Predictor.from_checkpoint(path)
    return predictor, _model_name(path, predictor.meta.config.name)


def _model_name(path: str, config_name: str) -> str:
    """The name the Runs tab shows for the model's run (a renamed run keeps its config's name), else the
    config's name."""
    folder = Path(path).parent
    return run_name(folder, config_name) if (folder / RUN_FILE).is_file() else config_name


def predict(predictor: Predictor, sources: list[Source], top_k: int) -> Generator[list[Result], None, None]:
    """Each source's prediction and thumbnail, in chunks (a folder's files, a series file's rows)."""
    files = _expand(sources, sounds=predictor.takes_audio, points=predictor.takes_points)
    if predictor.takes_points:  # meshes and point lists; anything else (an image) is refused by the predictor
        clouds = [s for s in files if s.path and Path(s.path).suffix.lower() in POINT_SUFFIXES]
        for i in range(0, len(clouds), CHUNK):
            yield _predict_points(predictor, clouds[i:i + CHUNK], top_k)
        files = [s for s in files if not (s.path and Path(s.path).suffix.lower() in POINT_SUFFIXES)]
    if predictor.takes_series:  # a file of series is many results; anything else is refused by the predictor
        for source in [s for s in files if s.path and Path(s.path).suffix.lower() in SERIES_SUFFIXES]:
            yield _predict_series(predictor, source, top_k)
        files = [s for s in files if not (s.path and Path(s.path).suffix.lower() in SERIES_SUFFIXES)]
    if predictor.takes_audio:  # sound files get a picture of the sound; anything else is refused by the predictor
        sounds = [s for s in files if s.path and Path(s.path).suffix.lower() in SOUND_SUFFIXES]
        for i in range(0, len(sounds), CHUNK):
            yield _predict_sounds(predictor, sounds[i:i + CHUNK], top_k)
        files = [s for s in files if s not in sounds]
    for i in range(0, len(files), CHUNK):
        chunk = files[i : i + CHUNK]
        inputs: list = []
        for s in chunk:
            if s.data:
                try:
                    image = Image.open(io.BytesIO(s.data))
                    image.load()
                    inputs.append(image)
                except Exception:  # noqa: BLE001 — the predictor reports unreadable input as an error entry
                    inputs.append(s.data)
            else:
                inputs.append(s.path)
        predictions = predictor.predict(inputs, top_k=top_k)
        yield [(s, p, _thumbnail(s)) for s, p in zip(chunk, predictions, strict=True)]


def _expand(sources: list[Source], *, sounds: bool = False, points: bool = False) -> list[Source]:
    """Files as they are, folders as the image files in them (with `sounds`, the sound files too; with `points`,
    the mesh and point files too)."""
    out = []
    for source in sources:
        if source.path and Path(source.path).is_dir():
            files = image_files(Path(source.path))
            if sounds:
                files = sorted(files + audio_files(Path(source.path)))
            if points:
                files = sorted(files + point_files(Path(source.path)))
            out.extend(Source(name=p.name, path=str(p)) for p in files)
        else:
            out.append(source)
    return out


def _thumbnail(source: Source) -> QImage:
    # QImage (unlike QPixmap) may be made in a worker thread.
    if source.data:
        image = QImage.fromData(source.data)
    elif not Path(source.path).is_file():  # a FIFO would block the reader forever; the entry shows the error
        return QImage()
    else:
        reader = QImageReader(source.path)
        reader.setAutoTransform(True)
        size = reader.size()
        if size.isValid() and max(size.width(), size.height()) > 4 * THUMB:
            reader.setScaledSize(size.scaled(2 * THUMB, 2 * THUMB, Qt.AspectRatioMode.KeepAspectRatio))
        image = reader.read()
        if image.isNull():  # e.g. past Qt's allocation limit (a 9000×9000 photo), which Pillow can still read
            image = _thumbnail_by_pillow(source.path)
    if image.isNull():
        return image
    # Tiny images (8×8 digits) are blown up with hard pixels, large ones smoothly.
    mode = Qt.TransformationMode.FastTransformation if max(image.width(), image.height()) < THUMB else Qt.TransformationMode.SmoothTransformation
    return image.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, mode)


def _thumbnail_by_pillow(path: str) -> QImage:
    """A small QImage of a file Qt would not decode, or a null image."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (2 * THUMB, 2 * THUMB))  # JPEG decodes at 1/2 … 1/8 scale: a fraction of the memory
            img = ImageOps.exif_transpose(img)
            img.thumbnail((2 * THUMB, 2 * THUMB), reducing_gap=2.0)
            rgba = img.convert("RGBA")
    except Exception:  # noqa: BLE001 — whatever Pillow cannot read keeps the "?" placeholder
        return QImage()
    return QImage(rgba.tobytes(), rgba.width, rgba.height, 4 * rgba.width, QImage.Format.Format_RGBA8888).copy()


def _predict_points(predictor: Predictor, sources: list[Source], top_k: int) -> list[Result]:
    """One result per mesh or point file, each with a scatter of the points the model read for a thumbnail."""
    read: dict[int, object] = {}
    results: dict[int, Result] = {}
    for i, source in enumerate(sources):
        try:
            read[i] = predictor.read_cloud(source.path)
        except PointsError as exc:
            results[i] = (source, Prediction(source.path, error=str(exc)), QImage())
    predictions = predictor.predict_clouds([sources[i].path for i in read], list(read.values()), top_k=top_k)
    for (i, cloud), prediction in zip(read.items(), predictions, strict=True):
        results[i] = (sources[i], prediction, points_image(cloud, THUMB))
    return [results[i] for i in range(len(sources))]


def _predict_series(predictor: Predictor, source: Source, top_k: int) -> list[Result]:
    """One result per series of the file, each with a line plot of its values for a thumbnail."""
    try:
        found = read_series(source.path, label_column=predictor.meta.config.data.label_column, labelled=False)
        predictions = predictor.predict_series(found, source.path, top_k=top_k)
    except SeriesError as exc:
        return [(source, Prediction(source.path, error=str(exc)), QImage())]
    return [(Source(name=f"{source.name}#{i + 1}", path=source.path, row=i + 1), prediction,
             series_image(values.T, THUMB))
            for i, (values, prediction) in enumerate(zip(found.values, predictions, strict=True))]


def _predict_sounds(predictor: Predictor, sources: list[Source], top_k: int) -> list[Result]:
    """A result per sound file, each with what the model reads of it for a thumbnail: its log-mel spectrogram
    (or waveform, for a waveform model)."""
    def picture(path: str) -> QImage:
        try:
            return sound_image(predictor.sound_picture(path), THUMB)
        except AudioError:  # the prediction holds the sentence
            return QImage()

    predictions = predictor.predict([s.path for s in sources], top_k=top_k)
    return [(s, p, picture(s.path) if not p.error else QImage()) for s, p in zip(sources, predictions, strict=True)]
