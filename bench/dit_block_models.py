"""Helpers of the DiT block study: synthetic task, tiny ComfyUI DiTs, training.

Random-weight DiTs have meaningless attention, so the study trains tiny models (ComfyUI's own MMDiT,
Flux, NextDiT, Qwen-Image and HiDream classes, one builder per layout in BUILDERS) on a task where
the true location of every prompt concept is known: 16-channel "latents" with one or two coloured
shapes on a smooth background, captioned "<colour> <shape> [and <colour> <shape>]" as token ids.
The capture goes through the pack (bench/dit_block_capture.py). Everything here is deterministic
given the seeds.
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

    def __init__(self, llama_layers=0):
        super().__init__()
        self.tok = torch.nn.Embedding(VOCAB, CTX_DIM)
        self.pos = torch.nn.Parameter(torch.randn(CTX_LEN, CTX_DIM) * 0.02)
        self.llama_layers = llama_layers
        if llama_layers:    # HiDream's per-layer Llama states: one learned table per layer
            self.llama = torch.nn.Embedding(VOCAB, CTX_DIM * llama_layers)

    def forward(self, tokens):
        """(context, pooled, Llama states (B, layers, tokens, width) or None)."""
        e = self.tok(tokens)
        real = (tokens != PAD).float()[..., None]
        pooled = (e * real).sum(1) / real.sum(1).clamp(min=1)
        llama = None
        if self.llama_layers:
            llama = self.llama(tokens).reshape(*tokens.shape, self.llama_layers, CTX_DIM).movedim(2, 1) + self.pos
        return e + self.pos, pooled, llama


# ----------------------------------------------------------------------------- tiny DiTs
def _init_weights(net):
    """ComfyUI's ops skip initialisation; give torch defaults, norms = 1 and adaLN-Zero (DiT).
    Returns the names of the parameters it set."""
    touched = set()
    for name, m in net.named_modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.Linear.reset_parameters(m)
        elif isinstance(m, torch.nn.Conv2d):
            torch.nn.Conv2d.reset_parameters(m)
        elif "norm" in type(m).__name__.lower() or "norm" in name.split(".")[-1].lower():
            for pname, p in m.named_parameters(recurse=False):
                with torch.no_grad():
                    p.fill_(1.0 if pname in ("weight", "scale") else 0.0)
        else:
            continue
        touched.update(f"{name}.{pname}" if name else pname for pname, _ in m.named_parameters(recurse=False))
    for name, m in net.named_modules():  # zero modulation outputs and the final projection
        if isinstance(m, torch.nn.Linear) and (name.endswith("adaLN_modulation.1") or name.endswith("mod.lin")
                                               or name.endswith("modulation.lin") or name == "final_layer.linear"
                                               or name.endswith("img_mod.1") or name.endswith("txt_mod.1")
                                               or name == "proj_out"):
            torch.nn.init.zeros_(m.weight)
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
    return touched


def _init_leftovers(net, touched):
    """Parameters no module initialiser reaches (NextDiT's pad tokens, HiDream's MoE gate, which
    ComfyUI leaves as torch.empty): small normal values, as a fresh DiT would have."""
    for name, p in net.named_parameters():
        if name not in touched:
            with torch.no_grad():
                p.normal_(0.0, 0.02)


def _build_mmdit(ops):
    """SD3-like: hidden 64*depth, heads=depth; num_blocks sets the block count (SD3: 24 / 38)."""
    net = MMDiT(input_size=16, patch_size=PATCH, in_channels=CHANNELS, depth=2, num_blocks=6, mlp_ratio=2.0,
                adm_in_channels=CTX_DIM, qk_norm="rms",
                context_embedder_config={"target": "torch.nn.Linear",
                                         "params": {"in_features": CTX_DIM, "out_features": 128}},
                operations=ops)
    return net, [f"j{i}" for i in range(6)], "SD3"


def _build_flux(ops, double=3, single=6, flux2=False):
    """Flux-like: 3 double-stream + 6 single-stream blocks (Flux.1: 19 + 38). flux2: Flux.2's block
    traits (no biases, shared modulation, SiLU-gated MLP, 4 rope axes, no pooled vector). Captured
    with Flux.1's family object: FLUX2 adds only the shift of concept positions behind
    model_base.Flux2's left padding to 512 tokens, which this directly called network lacks."""
    traits = dict(qkv_bias=True, guidance_embed=False, txt_ids_dims=[], vec_in_dim=CTX_DIM, axes_dim=[8, 12, 12])
    if flux2:
        traits.update(qkv_bias=False, ops_bias=False, global_modulation=True, mlp_silu_act=True, txt_ids_dims=[3],
                      vec_in_dim=None, axes_dim=[8, 8, 8, 8])
    net = Flux(in_channels=CHANNELS, out_channels=CHANNELS, context_in_dim=CTX_DIM, hidden_size=128, mlp_ratio=2.0,
               num_heads=4, depth=double, depth_single_blocks=single, theta=10000, patch_size=PATCH, operations=ops,
               **traits)
    labels = [f"d{i}" for i in range(double)] + [f"s{i}" for i in range(single)]
    return net, labels, "FLUX"


def _build_nextdit(ops):
    """Z-Image / Lumina 2's NextDiT: 6 main layers (Z-Image 30, Lumina 2 26) after 1 text-refiner
    and 1 image-refiner layer; text and image each padded to 32 tokens with learned pad tokens
    (Z-Image's pad_tokens_multiple), time scale 1000 (Z-Image); 2 heads x 64, SwiGLU 256 wide."""
    from comfy.ldm.lumina.model import NextDiT
    net = NextDiT(patch_size=PATCH, in_channels=CHANNELS, dim=128, n_layers=6, n_refiner_layers=1, n_heads=2,
                  n_kv_heads=2, multiple_of=16, ffn_dim_multiplier=0.75, qk_norm=True,
                  cap_feat_dim=CTX_DIM, axes_dims=[16, 24, 24], axes_lens=[64, 32, 32], time_scale=1000.0,
                  pad_tokens_multiple=32, operations=ops)
    return net, [f"l{i}" for i in range(6)], "LUMINA2"


def _build_qwen(ops):
    """Qwen-Image: 6 double-stream MMDiT blocks (Qwen-Image: 60), 2 heads x 64, latents (B, C, 1, H, W)."""
    from comfy.ldm.qwen_image.model import QwenImageTransformer2DModel
    net = QwenImageTransformer2DModel(patch_size=PATCH, in_channels=CHANNELS * PATCH * PATCH, out_channels=CHANNELS,
                                      num_layers=6, attention_head_dim=64, num_attention_heads=2,
                                      joint_attention_dim=CTX_DIM, axes_dims_rope=(16, 24, 24), operations=ops)
    return net, [f"j{i}" for i in range(6)], "QWEN_IMAGE"


HIDREAM_BLOCKS = (2, 4)      # HiDream I1: 16 double + 32 single


def _build_hidream(ops):
    """HiDream I1: 2 double + 4 single blocks (16 + 32), image first, one Llama layer per block,
    2 heads x 64, 2 routed experts / 1 active + the shared one (HiDream: 4 / 2; fewer to keep
    training minutes on one thread)."""
    from comfy.ldm.hidream.model import HiDreamImageTransformer2DModel
    double, single = HIDREAM_BLOCKS
    net = HiDreamImageTransformer2DModel(
        patch_size=PATCH, in_channels=CHANNELS, out_channels=CHANNELS, num_layers=double, num_single_layers=single,
        attention_head_dim=64, num_attention_heads=2, caption_channels=[CTX_DIM, CTX_DIM], text_emb_dim=CTX_DIM,
        num_routed_experts=2, num_activated_experts=1, axes_dims_rope=[32, 16, 16], max_resolution=[64, 64],
        llama_layers=list(range(double + single)), operations=ops)
    return net, [f"d{i}" for i in range(double)] + [f"s{i}" for i in range(single)], "HIDREAM"


BUILDERS = {"mmdit": _build_mmdit, "flux": _build_flux, "nextdit": _build_nextdit, "qwen": _build_qwen,
            "hidream": _build_hidream, "flux2": lambda ops: _build_flux(ops, 2, 8, flux2=True)}
# model_base's timestep = sigma * multiplier (ModelSamplingDiscreteFlow)
TIMESTEP_SCALE = {"mmdit": 1000.0, "flux": 1.0, "nextdit": 1.0, "qwen": 1.0, "hidream": 1000.0, "flux2": 1.0}
NEW_KINDS = ("nextdit", "qwen", "hidream", "flux2")     # built after the SD3 / Flux study: leftovers initialised


class Family:
    """One tiny DiT + its text encoder, with ComfyUI's calling convention and block labels (in run
    order; `pack_family` names the nodes/families object that captures it)."""

    def __init__(self, kind, size, seed):
        torch.manual_seed(seed)
        self.kind, self.size = kind, size
        self.net, self.labels, self.pack_family = BUILDERS[kind](comfy.ops.disable_weight_init)
        touched = _init_weights(self.net)
        if kind in NEW_KINDS:
            _init_leftovers(self.net, touched)
        for name, p in self.net.named_parameters():
            if not torch.isfinite(p).all():
                raise RuntimeError(f"uninitialised parameter {name}")
        self.double_single = any(lab[0] == "s" for lab in self.labels)
        llama = len(self.labels) if kind == "hidream" else 0
        self.text = TextEncoder(llama)

    def parameters(self):
        return list(self.net.parameters()) + list(self.text.parameters())

    def concept(self, slot):
        """(token positions, context length) of a prompt slot, as the family's concept_layout gives
        them: HiDream's Llama tokens follow its T5 context."""
        positions = list(CONCEPT_SLOTS[slot])
        if self.kind == "hidream":
            positions += [CTX_LEN + p for p in CONCEPT_SLOTS[slot]]
        return tuple(positions), CTX_LEN

    def __call__(self, x, sigma, tokens, transformer_options=None):
        """Velocity prediction v = eps - x0, timesteps scaled as ComfyUI's model_base does."""
        context, pooled, llama = self.text(tokens)
        to = {} if transformer_options is None else transformer_options
        t = sigma * TIMESTEP_SCALE[self.kind]
        if self.kind == "mmdit":
            return self.net(x, t, y=pooled, context=context, transformer_options=to)
        if self.kind == "nextdit":
            return self.net(x, t, context, CTX_LEN, transformer_options=to)
        if self.kind == "qwen":
            return self.net(x[:, :, None], t, context, transformer_options=to).reshape(x.shape)
        if self.kind == "hidream":
            return self.net(x, t, pooled, context, llama, None, None, to)
        return self.net(x, t, context, y=None if self.kind == "flux2" else pooled, transformer_options=to)


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
             for m in fam.net.modules() if isinstance(m, torch.nn.LayerNorm)] if fam.kind in ("flux", "flux2") else []
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
