"""Text-to-visual generation: the StyleGAN2 generator and the editing and super-resolution built on it."""
