"""Building blocks of the HD-VILA model: ResNet branches, the hybrid TimeSformer, the BERT text and
multimodal transformer, and the pixel conventions they expect."""
