"""Frames of a replayed episode, drawn from the observations, with the owner's id.

gymnax's own renderers (``gymnax.visualize``) draw through matplotlib animations one
figure per frame, which is slow and not available for our MultiCatch; the
observations of the environments marketjax trains on already are pictures, so a
frame is drawn straight from the observation the agents valued (numpy + Pillow):

- ``Catch-bsuite``: the 10 x 5 board (ball and paddle are 1);
- ``MultiCatch-K``: the K boards side by side, a grey column between them;
- ``*-MinAtar``: the 10 x 10 x C channels, each channel its own colour
  (gymnax's MinAtar observations are one-hot per object kind);
- ``CartPole-v1``: cart and pole from the observation (x, ẋ, θ, θ̇), with the track
  limits ±2.4 of the termination rule.

Any other environment has no frames (:func:`can_render` is False) and the replay
says so. Each frame gets a band on top, coloured by the owner's agent colour (the
colours of ``ownership.png``) with its label, e.g. ``t=3 agent 2``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SCALE = 16  # screen pixels per observation cell
BAND = 14  # pixels of the label band above each frame
MAX_STRIP = 24  # frames in the PNG strip (the GIF has the whole episode)
GIF_MS = 250  # milliseconds per GIF frame

# Channel colours of MinAtar frames (RGB; channel c gets _PALETTE[c % 10]).
_PALETTE = np.array(
    [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [140, 86, 75],
        [227, 119, 194],
        [127, 127, 127],
        [188, 189, 34],
        [23, 190, 207],
    ],
    np.uint8,
)


def can_render(env_name: str) -> bool:
    """Whether :func:`frame` can draw this environment's observations."""
    return (
        env_name in ("Catch-bsuite", "CartPole-v1")
        or env_name.startswith("MultiCatch-")
        or env_name.endswith("-MinAtar")
    )


def _upscale(cells: np.ndarray) -> np.ndarray:
    """u8[h, w, 3] cells -> u8[h*SCALE, w*SCALE, 3] blocks."""
    return np.repeat(np.repeat(cells, SCALE, axis=0), SCALE, axis=1)


def _board(board: np.ndarray) -> np.ndarray:
    """f32[h, w] in [0, 1] -> u8[h, w, 3] (1 black on white)."""
    grey = (255 * (1.0 - np.clip(board, 0.0, 1.0))).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def _cartpole(obs: np.ndarray, h: int = 90, w: int = 160) -> np.ndarray:
    """u8[h, w, 3]: the cart at x in [-2.4, 2.4] and the pole at angle θ."""
    img = np.full((h, w, 3), 255, np.uint8)
    x, theta = float(obs[0]), float(obs[2])
    ground = h - 20
    img[ground, :] = 0
    cx = round((x + 2.4) / 4.8 * (w - 20)) + 10
    img[ground - 8 : ground, max(cx - 10, 0) : min(cx + 10, w)] = (70, 70, 200)
    for r in np.linspace(0.0, 55.0, 120):  # the pole, 55 px long
        px = round(cx + r * np.sin(theta))
        py = round(ground - 8 - r * np.cos(theta))
        if 0 <= px < w and 0 <= py < h:
            img[py, max(px - 1, 0) : px + 2] = (200, 60, 40)
    return img


def frame(env_name: str, obs: np.ndarray, obs_shape: tuple) -> np.ndarray:
    """The picture of one observation: u8[H, W, 3].

    Args:
      env_name: an environment id with ``can_render(env_name)``.
      obs: f32[D] flat observation (as the agents saw it).
      obs_shape: the env's observation shape (``observation_space(params).shape``).
    """
    o = np.asarray(obs, np.float32).reshape(obs_shape)
    if env_name == "CartPole-v1":
        return _cartpole(o)
    if env_name.startswith("MultiCatch-"):  # [K, rows, cols]
        sep = np.full((o.shape[1], 1, 3), 160, np.uint8)
        parts = []
        for k in range(o.shape[0]):
            parts += [_board(o[k]), sep]
        return _upscale(np.concatenate(parts[:-1], axis=1))
    if env_name.endswith("-MinAtar"):  # [10, 10, C] one-hot object channels
        cells = np.full((*o.shape[:2], 3), 255, np.uint8)
        for c in range(o.shape[2]):
            cells[o[..., c] > 0.5] = _PALETTE[c % len(_PALETTE)]
        return _upscale(cells)
    return _upscale(_board(o))


def labelled(img: np.ndarray, text: str, colour) -> Image.Image:
    """The frame under a band of ``colour`` (RGB 0..1 floats) carrying ``text``."""
    h, w, _ = img.shape
    out = Image.new("RGB", (w, h + BAND), tuple(int(255 * c) for c in colour[:3]))
    out.paste(Image.fromarray(img), (0, BAND))
    dark = sum(colour[:3]) < 1.5
    ImageDraw.Draw(out).text((2, 1), text, fill="white" if dark else "black")
    return out


def write_frames(
    frames: list[np.ndarray], labels: list[str], colours: list, png: Path, gif: Path
) -> None:
    """A PNG strip of the first :data:`MAX_STRIP` labelled frames, and a GIF of all.

    Args:
      frames: u8[H, W, 3] pictures, one per step of an episode.
      labels: the text of each frame's band (step and owner).
      colours: RGB(A) 0..1 of each band (the owner's agent colour).
    """
    images = [
        labelled(f, t, c) for f, t, c in zip(frames, labels, colours, strict=True)
    ]
    strip = images[:MAX_STRIP]
    w, h = strip[0].size
    gap = 4
    sheet = Image.new("RGB", (len(strip) * (w + gap) - gap, h), (190, 190, 190))
    for i, im in enumerate(strip):
        sheet.paste(im, (i * (w + gap), 0))
    png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(png)
    images[0].save(
        gif, save_all=True, append_images=images[1:], duration=GIF_MS, loop=0
    )
