"""cni2cnm: a CNI plugin that attaches CNI containers to Docker (CNM) networks."""

__version__ = "0.1.0"
