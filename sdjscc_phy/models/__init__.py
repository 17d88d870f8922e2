"""Neural models: the JSCC codecs, the multi-task codec and the task classifier."""

#: Spatial downsampling of the JSCC encoders (two stride-2 stages): an H x W image becomes an
#: (H/4) x (W/4) grid of code channels. Defined here, not in ``models.jscc``, so that block
#: declarations read it without importing torch.
DOWNSAMPLING = 4
