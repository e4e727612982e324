"""The fusion patterns of the ``fuse`` pass, one family per module.

``attention`` (eager QK^T / scale / mask / softmax / ·V chains and GQA expansions into
``nn.attention``), ``norms`` (decomposed RMSNorm / LayerNorm), ``activations`` (decomposed
GELU and SiLU, activation epilogues of ``nn.linear``), ``rope`` (rotate-half rotary
embeddings into ``nn.rope`` with precomputed cos/sin tables), ``qkv`` (projections sharing an
input merged into one GEMM plus a split) and ``elementwise`` (chains of elementwise ops into
one ``fused.region``).
"""
