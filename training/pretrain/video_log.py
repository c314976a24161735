"""A query / key clip pair in TensorBoard: what the backbone was asked to match, every N steps of
pretraining (``PretrainConfig.log_videos``, ``s2vc pretrain --log-videos N``).

TensorBoard shows videos as animated GIFs in its Images tab. ``SummaryWriter.add_video`` encodes
them with moviepy, which s2vc does not install (without it add_video prints a line and logs
nothing); Pillow (a core dependency) writes the same GIF, handed to TensorBoard as the image
summary add_video would have made.
"""
from __future__ import annotations

import io

import torch

__all__ = ["clip_pair_gif", "log_clip_pair"]

GIF_FPS = 4          # add_video's default


def clip_pair_gif(query: torch.Tensor, key: torch.Tensor, fps: int = GIF_FPS) -> tuple[bytes, int, int]:
    """An animated GIF of the query (left) and the key (right), side by side, frame by frame.

    query, key: float (3, T, H, W) in [0, 1] (the key may over- or undershoot: clipped for display);
    the same T, H, W. Returns (GIF bytes, height, width)."""
    from PIL import Image

    if query.dim() != 4 or query.shape != key.shape or query.shape[0] != 3:
        raise ValueError(f"expected a query and a key of the same shape (3, T, H, W), got {tuple(query.shape)} "
                         f"and {tuple(key.shape)}")
    gap = torch.ones(3, query.shape[1], query.shape[2], 2, device=query.device)        # a white seam
    pair = torch.cat([query.float(), gap, key.float()], dim=3).clamp(0, 1)
    frames = (pair.mul(255).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy())   # (T, H, W', 3)
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return buf.getvalue(), frames.shape[1], frames.shape[2]


def log_clip_pair(writer, tag: str, query: torch.Tensor, key: torch.Tensor, step: int) -> None:
    """Log the first clip of a batch's query and key (B, 3, T, H, W) as one animated image ``tag``
    at ``step`` of a ``torch.utils.tensorboard.SummaryWriter``."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    gif, height, width = clip_pair_gif(query[0].detach(), key[0].detach())
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
