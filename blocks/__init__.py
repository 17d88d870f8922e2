"""Built-in blocks (installed as ``sdjscc_phy.blocks``), registered through the ``jsccflow.blocks`` entry point."""

from sdjscc_phy.blocks.analog import ComplexToReal, PowerNormalizer
from sdjscc_phy.blocks.binarizer import Binarizer
from sdjscc_phy.blocks.bit_source import BitSource
from sdjscc_phy.blocks.channels import AwgnChannel, RayleighChannel
from sdjscc_phy.blocks.detection import DetectionSource, Detector
from sdjscc_phy.blocks.image_source import ImageSource
from sdjscc_phy.blocks.mapping import SymbolDemapper, SymbolMapper
from sdjscc_phy.blocks.losses import LOSS_BLOCKS
from sdjscc_phy.blocks.metric_sink import MetricSink
from sdjscc_phy.blocks.multitask import MultitaskDecoder, MultitaskEncoder
from sdjscc_phy.blocks.neural import Classifier, JsccDecoder, JsccEncoder
from sdjscc_phy.blocks.snr_source import SnrSource
from sdjscc_phy.blocks.symbol_file_sink import SymbolFileSink
from sdjscc_phy.blocks.taps import ConstellationSink, ImageSink, TensorSink
from sdjscc_phy.blocks.sscc import ImageCodecDecoder, ImageCodecEncoder, LdpcDecoderBlock, LdpcEncoder

BUILTIN_BLOCKS = [
    ImageSource, BitSource, Binarizer, SymbolMapper, SymbolDemapper, AwgnChannel, RayleighChannel,
    JsccEncoder, JsccDecoder, Classifier, MetricSink, SymbolFileSink, ImageSink, ConstellationSink, TensorSink,
    ImageCodecEncoder, LdpcEncoder, LdpcDecoderBlock, ImageCodecDecoder, MultitaskEncoder, MultitaskDecoder,
    DetectionSource, Detector,
    SnrSource, PowerNormalizer, ComplexToReal, *LOSS_BLOCKS,
]
