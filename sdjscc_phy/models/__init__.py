"""Neural models: the JSCC codecs, the multi-task codec, the task classifier and the object detector."""

#: Spatial downsampling of the JSCC encoders (two stride-2 stages): an H x W image becomes an
#: (H/4) x (W/4) grid of code channels. Defined here, not in ``models.jscc``, so that block
#: declarations read it without importing torch.
DOWNSAMPLING = 4

#: The detector's sides must be multiples of this (four stride-2 stages); it predicts on a grid of
#: stride ``DETECTOR_STRIDE``. Here for the same reason as DOWNSAMPLING.
DETECTOR_INPUT_MULTIPLE = 16
DETECTOR_STRIDE = 4
#: The detector's trunks: the residual encoder trained from scratch, or the VGG stages of a classifier
#: checkpoint (``init_backbone``). Here for the same reason as DOWNSAMPLING.
DETECTOR_BACKBONES = ("centernet", "vgg")

#: The task classifier's layers whose feature maps a semantic or contrastive loss compares, and the ways
#: SD-JSCC's GSW weights them (eqs. 8-10, sdjscc_phy.training.gsw). Here for the same reason as DOWNSAMPLING.
FEATURE_LAYERS = ("stem", "block1", "block2", "block3", "pool", "logits")
#: Architectures of a fresh classifier block: the airbench-style task network, and a VGG-style network
#: that serves as the unseen receiver. Here for the same reason as DOWNSAMPLING.
CLASSIFIER_ARCHITECTURES = ("airbench", "vgg")
#: Activations after the JSCC codec's stage convolutions: PReLU, or GDN in the encoder and inverse GDN in
#: the decoder, each followed by PReLU (Balle et al. 2016, as in ADJSCC). Here for the same reason as DOWNSAMPLING.
JSCC_NONLINEARITIES = ("prelu", "gdn")
GSW_MODES = ("paper", "true_class", "predicted_class", "magnitude", "off")

#: The multi-task codec's receivers of the received features: nearest class subspace (the paper's, MCR²
#: features) or a linear layer trained with cross-entropy. Here for the same reason as DOWNSAMPLING.
MULTITASK_CLASSIFIERS = ("subspace", "linear")
#: The SNR gate of a gated multi-task codec: an MLP of the SNR, or one learned SNR threshold per code channel
#: (sent while the SNR is below it). Here for the same reason as DOWNSAMPLING.
MULTITASK_GATES = ("mlp", "threshold")
