"""Quantization surgeries (catalog section 26): a trained policy's Linear and Conv2d layers stored
and run at lower precision, on a trained model (``rls.operate``), at a step (``at_step``) or on a
fresh agent.

Which backend runs what, on the CPU:

* ``post_training_quantization`` and ``dynamic_quantization`` store int8 weight codes; Linear layers
  multiply int8 × int8 into int32 with PyTorch's integer GEMM (``torch._int_mm``), Conv2d layers
  run in fp32 on the dequantized weight (int8 size, simulated latency). ``torch.ao.quantization``
  (deprecated) is not used.
* ``quantization_aware_training``, ``binary_networks`` and ``ternary_networks`` train fp32 latent
  weights through fake quantization (straight-through); the size they report is the packed size
  (8, 1 or 2 bits a weight), their latency is that of fp32 (no 1- or 2-bit CPU kernel).
  ``post_training_quantization`` on a QAT model turns its layers into the int8 layers above, with
  the input ranges learnt in training.
* ``mixed_precision`` keeps the weights of its low-sensitivity layers in fp16 / bf16 and runs them
  in that dtype through PyTorch's CPU kernels.
"""
