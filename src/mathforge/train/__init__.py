"""Policy training: iteration-0 data from gold solutions (:mod:`.bootstrap`, :mod:`.templated`),
rejection sampling (:mod:`.rejection`), SFT records and their loss mask (:mod:`.records`,
:mod:`.tokenize`), the SFT trainer (:mod:`.sft`) and GRPO (:mod:`.grpo`, with token-exact
rollouts in :mod:`.rollouts` and the shaped reward in :mod:`.rewards`).

Submodules import torch and transformers only where they train, so ``mathforge data
bootstrap`` starts without them.
"""
