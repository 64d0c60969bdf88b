"""gdkvm: echocardiography video segmentation with a gated-delta-rule key-value memory."""

__version__ = "0.1.0"
