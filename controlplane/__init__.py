"""controlplane: hosting and operations control plane for a shared municipal datacenter."""

__version__ = "0.1.0"
