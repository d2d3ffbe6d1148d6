"""avlearn: audio-visual self-supervised learning (AVID/CMA), action recognition, sound localization."""

__version__ = "0.1.0"
