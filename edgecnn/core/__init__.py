"""Shared by every stage: the model description, manifest, data, images, files, errors and helpers."""
