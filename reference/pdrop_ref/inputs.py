"""Real inputs: photographs scikit-image ships, a clip panned across one of
them, and prompts put through each model's own processor and chat template.

Photographs (scikit-image's bundled sample data, skimage/data/):
  astronaut  512 x 512   Eileen Collins, NASA Great Images; public domain
  coffee     400 x 600   Rachel Michetti, Pikolo Espresso Bar; CC0
  chelsea    300 x 451   Stefan van der Walt; CC0
  rocket     427 x 640   DSCOVR launch, SpaceX; released to the public domain
The clip: 4 frames of 336 x 448 cut from `rocket`, the window moving 24 px
right and 8 px up per frame (a camera pan over real pixels).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def photo(name: str) -> Image.Image:
    import skimage.data
    if name not in PHOTOS:
        raise ValueError(f"unknown image '{name}' (expected one of {', '.join(PHOTOS)})")
    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def load_image(spec: str) -> Image.Image:
    """A bundled photograph by name, or an image file by path."""
    if spec in PHOTOS:
        return photo(spec)
    try:
        return Image.open(spec).convert("RGB")
    except FileNotFoundError:
        raise ValueError(f"image '{spec}' is neither a bundled photograph "
                         f"({', '.join(PHOTOS)}) nor a file") from None


def pan_clip(frames: int = 4) -> list[np.ndarray]:
    """`frames` frames (H 336, W 448, RGB uint8) panned across `rocket`."""
    import skimage.data
    img = skimage.data.rocket()  # (427, 640, 3)
    out = []
    for f in range(frames):
        y, x = 80 - 8 * f, 24 * f
        out.append(np.ascontiguousarray(img[y:y + 336, x:x + 448]))
    return out


def encode(arch: str, processor, prompt: str, images=(), video=None, image_first=True):
    """The model inputs (a dict of tensors, batch 1) of one user turn holding
    the images (and video), then the prompt, through the processor's chat
    template with the generation prompt added."""
    content = []
    media = [{"type": "image"} for _ in images]
    if video is not None:
        media.append({"type": "video"})
    text = [{"type": "text", "text": prompt}]
    content = media + text if image_first else text + media
    messages = [{"role": "user", "content": content}]
    chat = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    kw = {"text": [chat], "return_tensors": "pt"}
    if images:
        kw["images"] = list(images)
    if video is not None:
        kw["videos"] = [video]
    return dict(processor(**kw))
