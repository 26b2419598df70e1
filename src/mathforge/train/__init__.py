"""Policy training: iteration-0 data from gold solutions (:mod:`.bootstrap`), the SFT records and
their loss masks (:mod:`.records`, :mod:`.tokenize`) and the SFT trainer (:mod:`.sft`).

Submodules import torch and transformers only where they train, so ``mathforge data
bootstrap`` starts without them.
"""
