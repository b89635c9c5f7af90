"""The Qt-free core: model, data, training loop, checkpoints and prediction. Never import Qt here."""
