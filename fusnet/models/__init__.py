"""Backbones, channel attention modules and the Multi-FusNet model."""

from fusnet.models.attention import ATTENTION, build_attention
from fusnet.models.backbones import BACKBONES, build_backbone
from fusnet.models.multifusnet import MultiFusNet, MultiFusNetHead, MultiFusNetOutput

__all__ = [
    "ATTENTION",
    "BACKBONES",
    "MultiFusNet",
    "MultiFusNetHead",
    "MultiFusNetOutput",
    "build_attention",
    "build_backbone",
]
