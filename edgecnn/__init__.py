"""edgecnn: train a small MNIST CNN, export it for the edge, verify parity, benchmark it.

Importing the package is cheap on purpose: TensorFlow is imported only by the stages that need it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgecnn")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
