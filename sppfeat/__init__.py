"""sppfeat: spatial-pyramid-pooling image descriptors and linear-SVM classifiers (He et al. 2014).

The public API (importing one of these names loads what it needs, so `import sppfeat` stays cheap):

    extract(images, output, config, runtime, ...) -> ExtractResult   folder of images -> feature file
    describe(images, config) -> (N, D) float32 array                 images in memory -> vectors
    regions(images, boxes, output, config, runtime, ...) -> RegionsResult   boxes -> one vector per box
    describe_regions(image, boxes, config) -> (K, D) float32 array   boxes of one image -> vectors
    Describer(config, device=...)                                    the same two, network built once:
        .describe(images) -> (N, D), .describe_regions(image, boxes) -> (K, D); .config_, .dim
    load_features(path, rows=None) -> Features                       feature file -> arrays
    merge(shards, output)                                            shard files -> one feature file
    train_svm(features, model, ...) -> TrainResult                   feature file -> SVM model file
    evaluate(model, features, report=None, plots=None) -> Evaluation scores (and pictures) of a model on a file
    predict(model, images, output=None, ...) -> Predictions          a model on new photos: typed rows
    ExtractionConfig, REGION_DEFAULTS, Runtime                       the settings these take
    spatial_pyramid_pool, SpatialPyramidPool                         the pooling op and its module
    pyramid_pool_boxes, BoxPyramidPool                               the same for many boxes of one map
    proposals(images, output, config=ProposalConfig()) -> ProposalsResult   selective-search windows -> file
    train_detector(images, boxes, model, proposals=...) -> TrainDetectorResult   boxes -> detector model
    detect(model, images, output=None, ...) -> DetectResult          a detector on new photos: Detection rows
    evaluate_detections(detections, boxes, metric=...) -> DetectionEvaluation   VOC 2007 / 2010+ or COCO AP
    ProposalConfig, TrainingSettings, HeadSettings, DETECTION_DEFAULTS   the settings these take
"""

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "ExtractionConfig": "sppfeat.config",
    "REGION_DEFAULTS": "sppfeat.config",
    "Runtime": "sppfeat.features.runtime",
    "extract": "sppfeat.features.pipeline",
    "ExtractResult": "sppfeat.features.pipeline",
    "describe": "sppfeat.features.in_memory",
    "regions": "sppfeat.features.box_pipeline",
    "RegionsResult": "sppfeat.features.box_pipeline",
    "describe_regions": "sppfeat.features.in_memory",
    "Describer": "sppfeat.features.in_memory",
    "load_features": "sppfeat.storage.feature_file",
    "Features": "sppfeat.storage.feature_file",
    "merge": "sppfeat.storage.merge",
    "train_svm": "sppfeat.classify.training",
    "TrainResult": "sppfeat.classify.training",
    "evaluate": "sppfeat.classify.evaluation",
    "Evaluation": "sppfeat.classify.evaluation",
    "predict": "sppfeat.classify.prediction",
    "Prediction": "sppfeat.classify.prediction",
    "Predictions": "sppfeat.classify.prediction",
    "spatial_pyramid_pool": "sppfeat.pyramid",
    "SpatialPyramidPool": "sppfeat.pyramid",
    "pyramid_pool_boxes": "sppfeat.roi",
    "BoxPyramidPool": "sppfeat.roi",
    "proposals": "sppfeat.detection.proposals",
    "ProposalConfig": "sppfeat.detection.proposals",
    "ProposalsResult": "sppfeat.detection.proposals",
    "train_detector": "sppfeat.detection.training",
    "TrainDetectorResult": "sppfeat.detection.training",
    "TrainingSettings": "sppfeat.detection.settings",
    "HeadSettings": "sppfeat.detection.settings",
    "DETECTION_DEFAULTS": "sppfeat.config",
    "detect": "sppfeat.detection.inference",
    "Detection": "sppfeat.detection.inference",
    "DetectResult": "sppfeat.detection.inference",
    "evaluate_detections": "sppfeat.detection.evaluation",
    "DetectionEvaluation": "sppfeat.detection.metric",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'sppfeat' has no attribute {name!r}")


def __dir__():
    return __all__
