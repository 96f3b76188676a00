"""Baselines trained and evaluated beside Multi-FusNet under one protocol.

Each baseline shares Multi-FusNet's data, backbone, training loop (``fusnet.train.loop``) and
evaluation, and brings its paper's network head, loss and options (:mod:`fusnet.methods.options`);
choose one with ``RunConfig.method`` (``fusnet train --method dpsh``). Every module's docstring
names its sources and states its simplifications.

=========  ===========================  ==============================================
method     paper                        retrieval database
=========  ===========================  ==============================================
dpsh       Li et al., IJCAI 2016        network codes of the training images
hashnet    Cao et al., ICCV 2017        network codes of the training images
adsh       Jiang & Li, AAAI 2018        learned codes V of the training images
semicon    Shen et al., ECCV 2022       learned codes V of the training images
exchnet    Cui et al., ECCV 2020        learned codes V of the training images
=========  ===========================  ==============================================

Multi-FusNet itself is a method of the same kind (:class:`MultiFusNetMethod`, not in the
baselines' registry :data:`METHODS`); :func:`method_class` finds either by name.
"""

# Registration, in the order of the table above (the order of METHODS, so of notebook 09).
from fusnet.methods.baselines import dpsh, hashnet, adsh, semicon, exchnet  # noqa: F401, I001
from fusnet.methods.base import (
    LEARNED_DATABASE,
    METHODS,
    MULTIFUSNET,
    NETWORK_DATABASE,
    HashingMethod,
    HashingNet,
    HashOutput,
    build_method,
    method_names,
    register_method,
)
from fusnet.methods.multifusnet import MultiFusNetMethod

__all__ = [
    "LEARNED_DATABASE", "METHODS", "MULTIFUSNET", "NETWORK_DATABASE", "HashOutput", "HashingMethod",
    "HashingNet", "MultiFusNetMethod", "build_method", "method_class", "method_names",
    "register_method",
]


def method_class(name: str) -> type[HashingMethod]:
    """The :class:`HashingMethod` a ``RunConfig.method`` names: Multi-FusNet's or a baseline's.

    Raises:
        ConfigError: no such method.
    """
    return MultiFusNetMethod if name == MULTIFUSNET else build_method(name)
