"""s2vc.engine: the motion-preserved video generator and the normalizing flow it runs on.

(Video I/O lives in ``s2vc.engine.video_io``, imported on demand: the engine itself runs where
PyAV is absent.)"""
from . import extension  # noqa: F401  (loads s2vc._C: registers torch.ops.s2vc.* when built)
from .checkpoint import CheckpointError, load_flow, save_flow
from .flow import ADVFLOW_IMAGENET64, AdvFlow, FlowConfig
from .generator import GenerationStats, MotionPreservingGenerator
from .suppression import STRATEGIES, resolve_alpha, temporal_std_mask

__all__ = ["ADVFLOW_IMAGENET64", "AdvFlow", "CheckpointError", "FlowConfig", "GenerationStats",
           "MotionPreservingGenerator", "STRATEGIES", "load_flow", "resolve_alpha", "save_flow", "temporal_std_mask"]
