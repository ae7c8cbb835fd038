"""Pretraining on the Lightning engine.

The run (`run`), the LightningModule (`module`), the trainer and its checkpoints (`engine`), callbacks, monitors
and host tuning.
"""
