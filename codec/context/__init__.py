"""A causal model of the transform coder's latent symbols (issue 12).

- `symbols`: the integers a real 6 kbps stream holds, read back chunk by chunk, cached.
- `model`: the causal network (past frames -> this frame's gain and symbols) and the
  honest bit count of its predictions; `prior`: the same interface on the frozen tables.
- `train`: the resumable training loop (`python -m codec.context.train`).
- `generate`: sampling gains and symbols frame by frame, then the codec's own synthesis.

Nothing here changes the stream format: the model only measures and generates.
"""
