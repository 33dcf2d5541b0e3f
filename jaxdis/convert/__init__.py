"""PyTorch → Flax weight import (safetensors or torch files loaded with weights_only=True)."""
