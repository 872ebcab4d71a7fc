"""The fast path, fenced off: what exists only for speed. Each module computes what a plain
function of the reading path computes, and names the test that holds the two equal.

- `warp`: the elastic deformation's positions a row at a time and its compiled sampling
  loops (ext/_warp.pyx, ext/_taps.h) = `unet_ref.augment.sample_positions` and `warp`
  (tests/test_fast.py).
- `cells`: the cells of the mirrored labels numbered once per image and carried through the
  warp (ext/_regions.pyx, ext/_warp.pyx), only within the context of the crop =
  `unet_ref.tiles.mirrored_cells` (tests/test_fast.py).
- `tile`: a training tile from tables kept per image = `unet_ref.tiles.training_tile`
  (tests/test_fast.py); `unet_ref.pipeline.TileSampler` chooses it, at one place.
- `d1d2`: how the one-pass d1/d2 kernel (ext/_d1d2.pyx) is called = the per-cell
  `unet_ref.reference.d1_d2`, bit for bit (tests/test_weights.py); `unet_ref.weights`
  calls it.
"""
