"""cni2cnm: a CNI plugin that attaches CNI containers to Docker (CNM) networks."""

__version__ = "0.1.0"

# The plugin's "type" in a CNI config, and so the name of its executable in the CNI bin dir.
PLUGIN_TYPE = "cni2cnm"
