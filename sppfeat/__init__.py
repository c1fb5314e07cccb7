"""sppfeat: spatial-pyramid-pooling image descriptors and linear-SVM classifiers (He et al. 2014)."""

__version__ = "0.1.0"

from .extract import extract  # noqa: E402
from .pyramid import SpatialPyramidPool, spatial_pyramid_pool  # noqa: E402

__all__ = ["__version__", "extract", "spatial_pyramid_pool", "SpatialPyramidPool"]
