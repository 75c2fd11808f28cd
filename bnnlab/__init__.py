"""bnnlab: an experiment lab for binary neural networks.

The top-level package stays import-light (no torch, Lightning or MLflow) so that the
CLI answers ``--help`` quickly. Import building blocks from their sub-packages::

    from bnnlab.binary import BinaryConv2d, Bop
    from bnnlab.models import create_model
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
