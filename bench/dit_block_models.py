"""Helpers of the DiT block study: synthetic task, tiny ComfyUI DiTs, training, attention capture.

Random-weight DiTs have meaningless attention, so the study trains tiny models (ComfyUI's own MMDiT
and Flux classes) on a task where the true location of every prompt concept is known: 16-channel
"latents" with one or two coloured shapes on a smooth background, captioned "<colour> <shape> [and
<colour> <shape>]" as token ids. Everything here is deterministic given the seeds.
"""
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMFY = os.environ.get("COMFYUI_PATH", os.path.expanduser("~/ComfyUI"))
for p in (REPO, COMFY):
    if p not in sys.path:
        sys.path.insert(0, p)

import comfy.cli_args  # noqa: E402

comfy.cli_args.args.cpu = True
comfy.cli_args.args.use_pytorch_cross_attention = True  # SDPA: differentiable and fast on CPU
import comfy.model_management  # noqa: E402,F401
import comfy.ops  # noqa: E402
from comfy.ldm.flux.model import Flux  # noqa: E402
from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT  # noqa: E402

from ledits_core.attention import concept_attention_mass  # noqa: E402

CHANNELS, PATCH, CTX_LEN, CTX_DIM = 16, 2, 8, 64
N_COLOURS, N_SHAPES = 6, 3
PAD, AND = 0, 1
VOCAB = 2 + N_COLOURS + N_SHAPES
CONCEPT_SLOTS = ([0, 1], [3, 4])  # token positions of object 1 and object 2 in the prompt


# ----------------------------------------------------------------------------- synthetic task
class ShapeWorld:
    """Coloured shapes on a smooth background; the ground truth is each object's pixel mask."""

    def __init__(self, size=16, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.size = size
        colours = torch.randn(N_COLOURS, CHANNELS, generator=g)
        self.colours = 3.0 * colours / colours.norm(dim=1, keepdim=True)  # ~0.75 per channel

    def _shape(self, kind, s):
        yy, xx = torch.meshgrid(torch.arange(s) + 0.5 - s / 2, torch.arange(s) + 0.5 - s / 2, indexing="ij")
        if kind == 0:                       # square
            return torch.ones(s, s, dtype=torch.bool)
        if kind == 1:                       # disk
            return yy ** 2 + xx ** 2 <= (s / 2) ** 2
        return (yy.abs() + xx.abs()) <= s / 2  # diamond

    def sample(self, n, g):
        """n images: x0 (n,16,S,S), tokens (n,8), masks (n,2,S,S) bool, count (n,) in {1,2}."""
        S = self.size
        low = torch.randn(n, CHANNELS, 4, 4, generator=g) * 0.5
        x0 = F.interpolate(low, size=(S, S), mode="bilinear", align_corners=False)
        tokens = torch.full((n, CTX_LEN), PAD, dtype=torch.long)
        masks = torch.zeros(n, 2, S, S, dtype=torch.bool)
        count = 1 + (torch.rand(n, generator=g) < 0.5).long()
        for i in range(n):
            cols = torch.randperm(N_COLOURS, generator=g)[:2]
            shps = torch.randperm(N_SHAPES, generator=g)[:2]
            occupied = torch.zeros(S, S, dtype=torch.bool)
            for j in range(int(count[i])):
                for _ in range(50):  # rejection: objects do not touch
                    s = int(torch.randint(S // 4, S // 2 + 1, (1,), generator=g))
                    y, x = (int(v) for v in torch.randint(0, S - s + 1, (2,), generator=g))
                    m = torch.zeros(S, S, dtype=torch.bool)
                    m[y:y + s, x:x + s] = self._shape(int(shps[j]), s)
                    grown = F.max_pool2d(m[None, None].float(), 3, 1, 1)[0, 0].bool()
                    if not (grown & occupied).any():
                        break
                occupied |= m
                masks[i, j] = m
                x0[i][:, m] = self.colours[cols[j]][:, None]
                tokens[i, CONCEPT_SLOTS[j][0]] = 2 + int(cols[j])
                tokens[i, CONCEPT_SLOTS[j][1]] = 2 + N_COLOURS + int(shps[j])
            if count[i] == 2:
                tokens[i, 2] = AND
        return x0, tokens, masks, count


def token_masks(masks, patch=PATCH):
    """Ground truth on the image-token grid: a cell is inside when >= half of its pixels are."""
    frac = F.avg_pool2d(masks.float().flatten(0, 1)[:, None], patch)[:, 0]
    return (frac >= 0.5).reshape(*masks.shape[:2], *frac.shape[-2:])


class TextEncoder(torch.nn.Module):
    """Learned token + position embeddings (the 'T5'), mean of real tokens as the pooled vector."""

    def __init__(self):
        super().__init__()
        self.tok = torch.nn.Embedding(VOCAB, CTX_DIM)
        self.pos = torch.nn.Parameter(torch.randn(CTX_LEN, CTX_DIM) * 0.02)

    def forward(self, tokens):
        e = self.tok(tokens)
        real = (tokens != PAD).float()[..., None]
        pooled = (e * real).sum(1) / real.sum(1).clamp(min=1)
        return e + self.pos, pooled


# ----------------------------------------------------------------------------- tiny DiTs
def _init_weights(net):
    """ComfyUI's ops skip initialisation; give torch defaults, norms = 1 and adaLN-Zero (DiT)."""
    for name, m in net.named_modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.Linear.reset_parameters(m)
        elif isinstance(m, torch.nn.Conv2d):
            torch.nn.Conv2d.reset_parameters(m)
        elif "norm" in type(m).__name__.lower() or "norm" in name.split(".")[-1].lower():
            for pname, p in m.named_parameters(recurse=False):
                with torch.no_grad():
                    p.fill_(1.0 if pname in ("weight", "scale") else 0.0)
    for name, m in net.named_modules():  # zero modulation outputs and the final projection
        if isinstance(m, torch.nn.Linear) and (name.endswith("adaLN_modulation.1") or name.endswith("mod.lin")
                                               or name.endswith("modulation.lin") or name == "final_layer.linear"):
            torch.nn.init.zeros_(m.weight)
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
    for n, p in net.named_parameters():
        if not torch.isfinite(p).all():
            raise RuntimeError(f"uninitialised parameter {n}")


class Family:
    """One tiny DiT + its text encoder, with ComfyUI's calling convention and block labels."""

    def __init__(self, kind, size, seed):
        torch.manual_seed(seed)
        self.kind, self.size = kind, size
        ops = comfy.ops.disable_weight_init
        if kind == "mmdit":  # SD3-like: hidden 64*depth, heads=depth; num_blocks sets the block count
            self.net = MMDiT(input_size=size, patch_size=PATCH, in_channels=CHANNELS, depth=2, num_blocks=6, mlp_ratio=2.0,
                             adm_in_channels=CTX_DIM, qk_norm="rms",
                             context_embedder_config={"target": "torch.nn.Linear",
                                                      "params": {"in_features": CTX_DIM, "out_features": 128}},
                             operations=ops)
            self.blocks = [("double_block", i) for i in range(6)]
            self.labels = [f"j{i}" for i in range(6)]
        else:  # Flux-like: 3 double-stream + 6 single-stream blocks (Flux: 19 + 38)
            self.net = Flux(in_channels=CHANNELS, out_channels=CHANNELS, vec_in_dim=CTX_DIM, context_in_dim=CTX_DIM,
                            hidden_size=128, mlp_ratio=2.0, num_heads=4, depth=3, depth_single_blocks=6,
                            axes_dim=[8, 12, 12], theta=10000, patch_size=PATCH, qkv_bias=True,
                            guidance_embed=False, txt_ids_dims=[], operations=ops)
            self.blocks = [("double_block", i) for i in range(3)] + [("single_block", i) for i in range(6)]
            self.labels = [f"d{i}" for i in range(3)] + [f"s{i}" for i in range(6)]
        _init_weights(self.net)
        self.text = TextEncoder()
        self.heads = 2 if kind == "mmdit" else 4

    def parameters(self):
        return list(self.net.parameters()) + list(self.text.parameters())

    def __call__(self, x, sigma, tokens, transformer_options=None):
        """Velocity prediction v = eps - x0, timesteps scaled as ComfyUI's model_base does."""
        context, pooled = self.text(tokens)
        to = {} if transformer_options is None else transformer_options
        if self.kind == "mmdit":
            return self.net(x, sigma * 1000.0, y=pooled, context=context, transformer_options=to)
        return self.net(x, sigma, context, y=pooled, transformer_options=to)


def train(fam, world, steps, batch, lr, seed, log_every=100, log=print):
    """Rectified-flow training, logit-normal sigma (SD3), AdamW with warm-up + cosine decay.
    Returns the loss curve [(step, mean loss since the previous entry)]."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(fam.parameters(), lr=lr, weight_decay=0.0)
    curve, run, t0 = [], 0.0, time.perf_counter()
    # Flux: ComfyUI's differentiable RoPE instead of the fused kernel, and the LayerNorms read a
    # copy of the residual stream, which the blocks then update in place (`img += ...`).
    comfy.model_management.in_training = True
    hooks = [m.register_forward_pre_hook(lambda _m, a: (a[0].clone(),) + tuple(a[1:]))
             for m in fam.net.modules() if isinstance(m, torch.nn.LayerNorm)] if fam.kind == "flux" else []
    try:
        for step in range(1, steps + 1):
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, step / 100) * 0.5 * (1 + math.cos(math.pi * step / steps))
            x0, tokens, _, _ = world.sample(batch, g)
            sigma = torch.sigmoid(torch.randn(batch, generator=g))
            eps = torch.randn(x0.shape, generator=g)
            xt = (1 - sigma)[:, None, None, None] * x0 + sigma[:, None, None, None] * eps
            loss = F.mse_loss(fam(xt, sigma, tokens), eps - x0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(fam.parameters(), 1.0)
            opt.step()
            run += float(loss.detach())
            if step % log_every == 0 or step == steps:
                n = log_every if step % log_every == 0 else step % log_every
                curve.append((step, run / n))
                log(f"  [{fam.kind}] step {step:5d}  loss {run / n:.4f}  ({time.perf_counter() - t0:.0f} s)")
                run = 0.0
    finally:
        comfy.model_management.in_training = False
        for h in hooks:
            h.remove()
    return curve


# ----------------------------------------------------------------------------- capture
class BlockCapture:
    """Block-replace patches put a label into transformer_options; the attention override then
    computes each concept's M1 mass (image queries, text keys = the concept's tokens, softmax over
    all keys) with ledits_core's concept_attention_mass and lets the real kernel run."""

    def __init__(self, fam, concepts):
        self.fam, self.concepts = fam, concepts
        self.maps = {}          # (label, concept index) -> (R, N) head-mean mass
        self.capture_s = 0.0
        self.options = {"optimized_attention_override": self._override,
                        "patches_replace": {"dit": {b: self._labeler(lab) for b, lab in zip(fam.blocks, fam.labels)}}}

    @staticmethod
    def _labeler(label):
        def patch(args, extra):
            args = dict(args)
            args["transformer_options"] = dict(args["transformer_options"], study_block=label)
            return extra["original_block"](args)
        return patch

    def _override(self, func, *args, **kwargs):
        q, k = args[0], args[1]
        label = kwargs.get("transformer_options", {}).get("study_block")
        if label is not None:
            t0 = time.perf_counter()
            if not kwargs.get("skip_reshape", False):  # MMDiT: (B, N, heads*dim)
                heads = kwargs["heads"]
                q = q.reshape(q.shape[0], q.shape[1], heads, -1).transpose(1, 2)
                k = k.reshape(k.shape[0], k.shape[1], heads, -1).transpose(1, 2)
            q_img = q[:, :, CTX_LEN:]
            for c, positions in enumerate(self.concepts):
                mass = concept_attention_mass(q_img, k, positions, CTX_LEN, text_start=0, text_length=CTX_LEN)
                self.maps[(label, c)] = mass / q.shape[1]
            self.capture_s += time.perf_counter() - t0
        return func(*args, **kwargs)
