"""Policy training. Submodules import torch and transformers only where they train."""
