"""Augmentations of uint8 face crops, and spoofs synthesised from live crops.

Everything works on the uint8 (S, S, 3) RGB crop the server would feed the model, before the
model's own normalisation. The augmentations blunt the shortcuts a small spoof set offers:
the source resolution (down-then-up rescale, blur), compression (JPEG re-encoding at random
quality), exposure and colour (brightness, contrast, gamma, saturation, white balance),
sensor noise, and the framing/context of the crop (zoom in and out, shift, flip).

``synthesize_print`` and ``synthesize_replay`` turn a *live* crop into a plausible attack
with the cues a real attack leaves: a print's halftone screen, paper texture, colour loss,
compressed dynamic range and a paper edge; a replay's moire, pixel grid, gamma, screen
bezel and glare. They add attacks of new people (every live training subject) where the real
attacks come from few people; whether that helps is measured on the validation split
(``models/liveness.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass
class AugmentConfig:
    flip_p: float = 0.5
    # framing / context: zoom < 1 shows more context (outside the crop: replicated border)
    geometry_p: float = 0.9
    zoom_range: tuple[float, float] = (0.85, 1.2)
    shift: float = 0.06  # max shift, share of the side
    rotate_deg: float = 8.0
    # source resolution
    rescale_p: float = 0.5
    rescale_range: tuple[float, float] = (0.3, 0.9)  # downscale factor before scaling back up
    blur_p: float = 0.15
    blur_sigma: tuple[float, float] = (0.4, 1.4)
    # exposure and colour
    jitter_p: float = 0.85
    brightness: float = 0.35
    contrast: float = 0.35
    saturation: float = 0.4
    gamma: float = 0.3  # gamma in [1/(1+g), 1+g]
    white_balance: float = 0.08  # per-channel gain
    noise_p: float = 0.2
    noise_sigma: tuple[float, float] = (1.0, 6.0)
    # compression
    jpeg_p: float = 0.6
    jpeg_quality: tuple[int, int] = (30, 95)
    # camera: exposure in linear light (stops), with the noise and denoising blur of a dim
    # capture, and white-balance gains; off by default (the v2 recipe), on in the LOSO recipe
    camera_p: float = 0.0
    exposure_stops: tuple[float, float] = (-3.0, 2.0)
    wb_gain: float = 0.3  # red/blue gain in [1/(1+g), 1+g]


def _affine(crop: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    size = crop.shape[0]
    zoom = rng.uniform(*cfg.zoom_range)
    angle = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)
    dx, dy = rng.uniform(-cfg.shift, cfg.shift, size=2) * size
    c = (size - 1) / 2.0
    matrix = cv2.getRotationMatrix2D((c, c), angle, zoom)
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(crop, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def rescale(crop: np.ndarray, factor: float) -> np.ndarray:
    """Down to ``factor`` x the side (area), back up (linear): a lower source resolution."""
    size = crop.shape[0]
    small = max(8, int(round(size * factor)))
    out = cv2.resize(np.ascontiguousarray(crop), (small, small), interpolation=cv2.INTER_AREA)
    return cv2.resize(out, (size, size), interpolation=cv2.INTER_LINEAR)


def jpeg(crop: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(crop[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1] if ok else crop


def _colour(x: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    x = x * (1.0 + rng.uniform(-cfg.brightness, cfg.brightness))
    mean = x.mean()
    x = (x - mean) * (1.0 + rng.uniform(-cfg.contrast, cfg.contrast)) + mean
    gray = x @ LUMA
    x = (x - gray[..., None]) * (1.0 + rng.uniform(-cfg.saturation, cfg.saturation)) + gray[..., None]
    x = x * (1.0 + rng.uniform(-cfg.white_balance, cfg.white_balance, size=3)).astype(np.float32)
    g = rng.uniform(1.0 / (1.0 + cfg.gamma), 1.0 + cfg.gamma)
    return 255.0 * (np.clip(x, 0, 255) / 255.0) ** g


def camera(crop: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Another camera's exposure and white balance, in linear light: darker frames get the
    sensor noise and the denoising blur of a dim capture, brighter ones clip."""
    linear = (crop.astype(np.float32) / 255.0) ** 2.2
    stops = rng.uniform(*cfg.exposure_stops)
    red = rng.uniform(1.0 / (1.0 + cfg.wb_gain), 1.0 + cfg.wb_gain)
    blue = rng.uniform(1.0 / (1.0 + cfg.wb_gain), 1.0 + cfg.wb_gain)
    linear = linear * (2.0 ** stops) * np.array([red, 1.0, blue], dtype=np.float32)
    if stops < -1.0:
        sigma = np.sqrt(np.clip(linear, 0, 1) * rng.uniform(0.0005, 0.004) + rng.uniform(0.0005, 0.003) ** 2)
        linear = linear + rng.normal(0.0, 1.0, linear.shape).astype(np.float32) * sigma
    out = np.clip(np.round(255.0 * np.clip(linear, 0.0, 1.0) ** (1 / 2.2)), 0, 255).astype(np.uint8)
    if stops < -1.0 and rng.random() < 0.7:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.2))
    return out


def augment_crop(crop: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """One random augmentation of a uint8 (S, S, 3) RGB crop; returns uint8 of the same shape."""
    out = np.ascontiguousarray(crop)
    if cfg.camera_p > 0 and rng.random() < cfg.camera_p:
        out = camera(out, rng, cfg)
    if rng.random() < cfg.geometry_p:
        out = _affine(out, rng, cfg)
    if rng.random() < cfg.flip_p:
        out = np.ascontiguousarray(out[:, ::-1])
    if rng.random() < cfg.rescale_p:
        out = rescale(out, rng.uniform(*cfg.rescale_range))
    if rng.random() < cfg.blur_p:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(*cfg.blur_sigma))
    if rng.random() < cfg.jitter_p or rng.random() < cfg.noise_p:
        x = out.astype(np.float32)
        if rng.random() < cfg.jitter_p:
            x = _colour(x, rng, cfg)
        if rng.random() < cfg.noise_p:
            x = x + rng.normal(0.0, rng.uniform(*cfg.noise_sigma), size=x.shape).astype(np.float32)
        out = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < cfg.jpeg_p:
        out = jpeg(out, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    return np.ascontiguousarray(out, dtype=np.uint8)


# --- attack synthesis ----------------------------------------------------------------------

def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return xx, yy


def _edge_mask(size: int, rng: np.random.Generator, min_inset: float, max_inset: float) -> np.ndarray:
    """1 inside a straight edge cutting off one side of the crop, 0 beyond it (slightly tilted)."""
    xx, yy = _grid(size)
    side = int(rng.integers(4))
    inset = rng.uniform(min_inset, max_inset) * size
    tilt = rng.uniform(-0.15, 0.15)
    coord, other = [(xx, yy), (size - 1 - xx, yy), (yy, xx), (size - 1 - yy, xx)][side]
    return (coord > inset + tilt * (other - size / 2)).astype(np.float32)


def synthesize_print(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A live crop as if printed and held up: halftone, paper texture, colour loss, an edge."""
    size = crop.shape[0]
    x = crop.astype(np.float32) / 255.0
    xx, yy = _grid(size)
    # colour loss and the paper's limited dynamic range (ink never black, paper never white)
    gray = x @ LUMA
    x = gray[..., None] + (x - gray[..., None]) * rng.uniform(0.35, 0.85)
    lo, hi = rng.uniform(0.04, 0.15), rng.uniform(0.78, 0.95)
    x = lo + (hi - lo) * x
    x = x * np.array([1.0, rng.uniform(0.95, 1.0), rng.uniform(0.82, 0.97)], dtype=np.float32)  # warm paper
    # halftone: an ordered dot screen at a random period and angle, blended in
    if rng.random() < 0.8:
        period = rng.uniform(2.2, 5.0)
        angle = rng.uniform(0, np.pi)
        u = (xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period
        v = (-xx * np.sin(angle) + yy * np.cos(angle)) * 2 * np.pi / period
        screen = 0.5 + 0.25 * (np.cos(u) + np.cos(v))  # 0..1 dot pattern
        dots = (x > screen[..., None]).astype(np.float32)
        dots = cv2.GaussianBlur(dots, (0, 0), 0.6)
        amount = rng.uniform(0.1, 0.4)
        x = x * (1 - amount) + dots * amount
    # paper texture: fine grain and low-frequency unevenness
    grain = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), rng.uniform(0.5, 1.2))
    low = cv2.resize(rng.normal(0, 1, (4, 4)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    x = x * (1 + rng.uniform(0.01, 0.05) * grain[..., None] + rng.uniform(0.0, 0.06) * low[..., None])
    # a printer's and the camera's blur
    x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 1.0))
    # the paper's edge, the background beyond it
    if rng.random() < 0.35:
        mask = cv2.GaussianBlur(_edge_mask(size, rng, 0.02, 0.18), (0, 0), 0.8)[..., None]
        background = rng.uniform(0.1, 0.8, 3).astype(np.float32) * (1 + 0.05 * low[..., None])
        x = x * mask + background * (1 - mask)
    return np.clip(x * 255.0, 0, 255).astype(np.uint8)


def synthesize_replay(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A live crop as if shown on a screen and re-captured: moire, pixel grid, gamma, bezel, glare."""
    size = crop.shape[0]
    x = crop.astype(np.float32) / 255.0
    xx, yy = _grid(size)
    # the screen's tone curve and colour temperature
    x = x ** rng.uniform(0.6, 1.5)
    x = x * np.array([rng.uniform(0.85, 1.0), rng.uniform(0.92, 1.0), rng.uniform(0.95, 1.12)], dtype=np.float32)
    # pixel grid: RGB sub-pixel stripes plus dark gaps between pixel rows
    if rng.random() < 0.6:
        period = rng.uniform(2.0, 4.0)
        phase = (xx / period) % 1.0
        stripes = np.stack([np.clip(1 - np.abs(phase - c) * 3, 0, 1) for c in (1 / 6, 1 / 2, 5 / 6)], axis=-1)
        rows = 0.5 + 0.5 * np.cos(2 * np.pi * yy / period)
        pattern = stripes * (0.7 + 0.3 * rows[..., None])
        amount = rng.uniform(0.05, 0.25)
        x = x * (1 - amount) + x * pattern * 1.8 * amount
    # moire: interference between the screen and the sensor grid, a beat near the Nyquist limit
    if rng.random() < 0.8:
        f = rng.uniform(0.05, 0.45)
        angle = rng.uniform(0, np.pi)
        wave = np.cos(2 * np.pi * f * (xx * np.cos(angle) + yy * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
        warp = cv2.resize(rng.normal(0, 1, (3, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
        wave = np.cos(np.arccos(np.clip(wave, -1, 1)) + 1.5 * warp)
        x = x * (1 + rng.uniform(0.03, 0.15) * wave[..., None])
    # glare: a soft bright blob or band reflecting a light source
    if rng.random() < 0.5:
        cx, cy = rng.uniform(0, size, 2)
        sigma = rng.uniform(0.15, 0.5) * size
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
        x = x + rng.uniform(0.1, 0.45) * blob[..., None]
    # the screen's black level and the bezel around it
    x = rng.uniform(0.02, 0.1) + x * rng.uniform(0.8, 0.98)
    if rng.random() < 0.35:
        mask = _edge_mask(size, rng, 0.02, 0.15)[..., None]
        bezel = np.full(3, rng.uniform(0.0, 0.12), dtype=np.float32)
        x = x * mask + bezel * (1 - mask)
    x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 0.9))
    return np.clip(x * 255.0, 0, 255).astype(np.uint8)


SYNTHESIZERS = {"print": synthesize_print, "replay": synthesize_replay}


def synthesize(crop: np.ndarray, rng: np.random.Generator, kinds: tuple[str, ...] = ("print", "replay")) -> tuple[np.ndarray, str]:
    """(spoof crop, attack name) from a live crop, the attack kind drawn from ``kinds``."""
    kind = kinds[int(rng.integers(len(kinds)))]
    return SYNTHESIZERS[kind](crop, rng), f"synthetic-{kind}"
