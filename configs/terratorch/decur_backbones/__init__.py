"""Registers decur's backbones (decur_joint, decur_encoder) with TerraTorch; named by `custom_modules_path`."""

from decur.weights.terratorch import register

register()
