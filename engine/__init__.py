"""s2vc.engine: the motion-preserved video generator and the normalizing flow it runs on."""
from .checkpoint import CheckpointError, load_flow, save_flow
from .flow import ADVFLOW_IMAGENET64, AdvFlow, FlowConfig

__all__ = ["ADVFLOW_IMAGENET64", "AdvFlow", "CheckpointError", "FlowConfig", "load_flow", "save_flow"]
