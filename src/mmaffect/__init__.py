"""mmaffect: multimodal affective computing (sentiment, emotion) from text, audio and video on a CPU."""

__version__ = "0.1.0"
