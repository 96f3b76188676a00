"""Baselines trained and evaluated beside Multi-FusNet under one protocol.

Each baseline shares Multi-FusNet's data, backbone, training loop (``fusnet.train``) and
evaluation, and brings its paper's network head, loss and hyper-parameters
(``RunConfig.baseline``); choose one with ``RunConfig.method`` (``fusnet train --method
dpsh``). Every module's docstring names its sources and states its simplifications.

=========  ===========================  ==============================================
method     paper                        retrieval database
=========  ===========================  ==============================================
dpsh       Li et al., IJCAI 2016        network codes of the training images
hashnet    Cao et al., ICCV 2017        network codes of the training images
adsh       Jiang & Li, AAAI 2018        learned codes V of the training images
semicon    Shen et al., ECCV 2022       learned codes V of the training images
exchnet    Cui et al., ECCV 2020        learned codes V of the training images
=========  ===========================  ==============================================
"""

from fusnet.baselines import adsh, dpsh, exchnet, hashnet, semicon  # noqa: F401  (registration)
from fusnet.baselines.base import (
    LEARNED_DATABASE,
    METHODS,
    MULTIFUSNET,
    NETWORK_DATABASE,
    HashingMethod,
    HashingNet,
    HashOutput,
    build_method,
    register_method,
)

__all__ = [
    "LEARNED_DATABASE",
    "METHODS",
    "MULTIFUSNET",
    "NETWORK_DATABASE",
    "HashOutput",
    "HashingMethod",
    "HashingNet",
    "build_method",
    "register_method",
]
