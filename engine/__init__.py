"""s2vc.engine: the motion-preserved video generator and the normalizing flow it runs on.

(Video I/O lives in ``s2vc.engine.video_io``, imported on demand: the engine itself runs where
PyAV is absent.)"""
from .checkpoint import CheckpointError, load_flow, save_flow
from .flow import ADVFLOW_IMAGENET64, AdvFlow, FlowConfig
from .generator import GenerationStats, MotionPreservingGenerator
from .suppression import STRATEGIES, temporal_std_mask

__all__ = ["ADVFLOW_IMAGENET64", "AdvFlow", "CheckpointError", "FlowConfig", "GenerationStats",
           "MotionPreservingGenerator", "STRATEGIES", "load_flow", "save_flow", "temporal_std_mask"]
