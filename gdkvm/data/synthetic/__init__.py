"""Synthetic echocardiography with known truth, written in the exact on-disk formats of CAMUS and EchoNet-Dynamic.

A 3D left ventricle (truncated prolate ellipsoid with an elliptical short axis, a myocardial wall and a left atrium
above the mitral base) contracts over the cardiac cycle with a chosen EF and heart rate, so the true EDV, ESV and EF
are known in closed form; apical 4CH and 2CH views are two planes through its long axis, rendered as B-mode sector
images with speckle, attenuation and random gain / depth / probe pose, with CAMUS label masks from the same geometry.

Public API: :func:`synth_camus`, :func:`synth_echonet`, :func:`make_clip`, :class:`HeartShape`.
"""

from __future__ import annotations

from gdkvm.data.synthetic.camus import synth_camus
from gdkvm.data.synthetic.clip import make_clip
from gdkvm.data.synthetic.echonet import synth_echonet
from gdkvm.data.synthetic.geometry import LABEL_LA, LABEL_LV, LABEL_MYO, HeartShape, volume_fraction

__all__ = [
    "LABEL_LA",
    "LABEL_LV",
    "LABEL_MYO",
    "HeartShape",
    "make_clip",
    "synth_camus",
    "synth_echonet",
    "volume_fraction",
]
