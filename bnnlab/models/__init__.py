"""The model zoo: binary networks from the papers, their real-valued teachers, and small
CPU variants, behind one registry.

    >>> from bnnlab.models import create_model, list_models, model_info
    >>> model = create_model("bireal18", num_classes=10, **model_info("bireal18").proxy)
    >>> logits = model(torch.randn(2, 3, 32, 32))

Every factory takes ``num_classes``, ``in_channels``, ``input_size``, ``width``,
``activation`` and ``weight`` (quantizer names for the binary layers) plus model-specific
switches; every model subclasses :class:`BnnModel` (``forward_features``,
``forward_head``, ``num_features``, ``binary_parameters()``).

=================  ===========================================================
name               model
=================  ===========================================================
bireal18/34        Bi-Real Net (arXiv:1808.00278); ``-real``: real initialiser
bireal20           Bi-Real ResNet-20 for CIFAR
xnornet18          XNOR-Net ResNet-18 (shortcut per two binary convs)
reactnet-a         ReActNet-A, binary MobileNetV1 (arXiv:2003.03488)
reactnet18         ReActNet on Bi-Real-18
binarynet          BinaryNet CIFAR-10 VGG (arXiv:1602.02830, Bop arXiv:1906.02107)
alexnet-binary     Bop's binary AlexNet
xnornet            XNOR-Net AlexNet (arXiv:1603.05279)
resnet18/34/50     real-valued torchvision ResNets (teachers)
mlp, binary-mlp    small MLPs for 8x8 digits
binary-cnn-tiny    tiny Bi-Real CNN for 8x8 digits
=================  ===========================================================
"""

from bnnlab.models import alexnet, binarynet, bireal, mlp, reactnet, resnet  # noqa: F401  (registration)
from bnnlab.models._common import BnnModel
from bnnlab.models._registry import MODELS, ModelEntry, ModelInfo, create_model, list_models, model_info

__all__ = ["MODELS", "BnnModel", "ModelEntry", "ModelInfo", "create_model", "list_models", "model_info"]
