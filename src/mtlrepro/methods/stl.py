"""Single-task learning: the reference every Delta_m is measured against."""
from .base import SingleTask


class STL(SingleTask):
    name = "stl"
