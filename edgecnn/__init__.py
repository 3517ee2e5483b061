"""edgecnn: take a Keras image classifier from training to deployment: export it for the edge, verify parity, benchmark it.

Importing the package is cheap on purpose: TensorFlow is imported only by the stages that need it, and the version is
a literal (pyproject reads it from here) because `importlib.metadata` alone costs ~40 ms of every start.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
