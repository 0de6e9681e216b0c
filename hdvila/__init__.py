"""HD-VILA: high-resolution video-language representation and its text-to-visual generation tasks.

Layout: ``hdvila`` (the video-language model and shared plumbing), ``generation`` (StyleGAN2,
editing, super-resolution), ``apps`` (web UI and command line). Data flows one way:
frames/text -> embeddings -> latents -> images.
"""

__version__ = "0.1.0"
