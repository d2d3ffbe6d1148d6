"""Pretraining: config, loop, checkpoints, optimiser schedules, logging (``avlearn pretrain``)."""
