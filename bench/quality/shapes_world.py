"""A synthetic RGB world whose truth is known: flat-coloured shapes on smooth backgrounds.

Every scene is deterministic from its seed: 128x128 RGB in [0, 1], one to three non-overlapping
objects (a colour x a shape, each colour at most once), a background with a gradient and a
low-frequency texture, a caption such as "a red square and a blue circle on a green field", and
the exact pixel mask of every object. Training draws scenes from seeds below HELD_OUT; the
measurement uses seeds from HELD_OUT on, which training never sees.
"""
import dataclasses
import math

import torch
import torch.nn.functional as F

SIZE = 128
COLOURS = {"red": (0.86, 0.12, 0.12), "blue": (0.15, 0.3, 0.9), "yellow": (0.95, 0.85, 0.15),
           "purple": (0.6, 0.2, 0.75), "white": (0.95, 0.95, 0.95)}
SHAPES = ("square", "circle", "triangle")
BACKGROUNDS = {"green field": (0.25, 0.55, 0.2), "grey wall": (0.5, 0.5, 0.5), "brown floor": (0.45, 0.3, 0.18)}
SIZE_RANGE = (28, 44)          # object side / diameter in pixels (3.5-5.5 latent cells)
GAP = 8                        # objects keep at least one latent cell apart
HELD_OUT = 1_000_000           # scene seeds >= this are never used for training
# World variants: "full" (above); "simple" has fewer words to learn (3 colours x 2 shapes, 2
# backgrounds, 1-2 objects) so that a tiny model on one CPU thread learns to read them in minutes.
VARIANTS = {"full": {"colours": tuple(COLOURS), "shapes": SHAPES, "backgrounds": tuple(BACKGROUNDS), "most": 3},
            "simple": {"colours": ("red", "blue", "yellow"), "shapes": ("square", "circle"),
                       "backgrounds": ("green field", "grey wall"), "most": 2}}


@dataclasses.dataclass
class Scene:
    image: torch.Tensor        # (3, H, W) in [0, 1]
    masks: torch.Tensor        # (k, H, W) bool, one per object, in caption order
    objects: list              # [(colour, shape)] in caption order
    background: str
    seed: int
    variant: str = "full"

    @property
    def caption(self):
        return caption(self.objects, self.background)


def object_phrase(colour, shape):
    return f"{colour} {shape}"


def caption(objects, background=None):
    """'a red square, a blue circle and a yellow triangle on a green field'."""
    names = [f"a {object_phrase(c, s)}" for c, s in objects]
    text = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return text + (f" on a {background}" if background else "")


_YY, _XX = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")


def shape_mask(shape, size, top, left):
    y, x = _YY - top, _XX - left
    inside_box = (y >= 0) & (y < size) & (x >= 0) & (x < size)
    if shape == "square":
        return inside_box
    if shape == "circle":
        r = size / 2
        return (y - r) ** 2 + (x - r) ** 2 <= r * r
    return inside_box & ((x - size / 2).abs() <= y / 2)   # triangle, apex up


def background_image(rgb, g, n=SIZE):
    base = torch.tensor(rgb)[:, None, None]
    angle = float(torch.rand(1, generator=g)) * 6.2832
    yy, xx = (_YY / n) * 2 - 1, (_XX / n) * 2 - 1
    gradient = 0.06 * (math.cos(angle) * xx + math.sin(angle) * yy)
    texture = F.interpolate(torch.randn(1, 3, 5, 5, generator=g) * 0.04, size=(n, n), mode="bicubic",
                            align_corners=True)[0]
    return (base + gradient + texture).clamp(0, 1)


def scene(seed, n_objects=None, variant="full"):
    """The scene of `seed` (n_objects: 1 to the variant's most, or drawn from the seed)."""
    words = VARIANTS[variant]
    g = torch.Generator().manual_seed(int(seed))
    k = n_objects or int(torch.randint(1, words["most"] + 1, (1,), generator=g))
    backgrounds, palette, shapes = words["backgrounds"], words["colours"], words["shapes"]
    background = backgrounds[int(torch.randint(len(backgrounds), (1,), generator=g))]
    image = background_image(BACKGROUNDS[background], g)
    colours = [palette[i] for i in torch.randperm(len(palette), generator=g)[:k]]
    boxes, objects, masks = [], [], []
    for colour in colours:
        shape = shapes[int(torch.randint(len(shapes), (1,), generator=g))]
        for _ in range(200):
            size = int(torch.randint(SIZE_RANGE[0], SIZE_RANGE[1] + 1, (1,), generator=g))
            top, left = (int(v) for v in torch.randint(4, SIZE - size - 4, (2,), generator=g))
            box = (top - GAP, left - GAP, top + size + GAP, left + size + GAP)   # boxes GAP apart
            if all(box[0] >= b[2] - GAP or box[2] - GAP <= b[0] or box[1] >= b[3] - GAP or box[3] - GAP <= b[1]
                   for b in boxes):
                break
        else:
            continue
        boxes.append(box)
        mask = shape_mask(shape, size, top, left)
        shade = 1.0 + 0.04 * torch.linspace(-1, 1, SIZE)[:, None]          # a soft vertical light
        fill = (torch.tensor(COLOURS[colour])[:, None, None] * shade).clamp(0, 1)
        image = torch.where(mask, fill, image)
        objects.append((colour, shape))
        masks.append(mask)
    return Scene(image, torch.stack(masks), objects, background, int(seed), variant)


def training_batch(n, g, variant="full"):
    """n scenes from training seeds drawn with generator g."""
    seeds = torch.randint(0, HELD_OUT, (n,), generator=g)
    return [scene(int(s), variant=variant) for s in seeds]


def held_out(n, n_objects=None, variant="full"):
    return [scene(HELD_OUT + i, n_objects, variant) for i in range(n)]


def palette_distance(image, rgb):
    """Per-pixel Euclidean distance of an (3, H, W) image to a colour."""
    return (image - torch.tensor(rgb, dtype=image.dtype)[:, None, None]).norm(dim=0)


def nearest_colour(image, names):
    """Per pixel, the index into `names` (object colours or background names) of the nearest."""
    table = {**COLOURS, **BACKGROUNDS}
    return torch.stack([palette_distance(image, table[name]) for name in names]).argmin(0)
