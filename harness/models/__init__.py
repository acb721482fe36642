"""Model loading and the tiny offline stand-in checkpoints."""
