"""The model families of the edit templates in tools/build/build_workflows.py: which files each loads
(the names ComfyUI's own templates for that family use), the nodes it needs around LEDITS++
(sampling shift, distilled guidance, zeroed negative, scheduler), its settings and the note
paragraph on its specifics. Data only; needs only Python."""
from dataclasses import dataclass

SD15_CKPT = "v1-5-pruned-emaonly.safetensors"
SDXL_CKPT = "sd_xl_base_1.0.safetensors"
SD35_CKPT = "sd3.5_medium_incl_clips_t5xxlfp8scaled.safetensors"   # ComfyUI's SD3.5 example checkpoint
FLUX_CKPT = "flux1-dev-fp8.safetensors"                             # ComfyUI's one-file Flux dev checkpoint


@dataclass(frozen=True)
class SplitFiles:
    """The separate files a family's own ComfyUI templates load (Load Diffusion Model, a CLIP
    loader, Load VAE), and the sampling-shift node they put after the model (None: none)."""
    unet: str
    clips: tuple
    clip_type: str
    vae: str
    sampling: tuple = None          # (node type, shift)


@dataclass(frozen=True)
class Family:
    """One edit template's family. `cfg`: source_cfg of the Inversion and cfg of Guided Edit (used
    once a source / target prompt is connected); `guidance`: FluxGuidance on the empty prompt;
    `zero_negative`: ConditioningZeroOut on it; `scheduler`: a scheduler node feeding the
    Inversion's sigmas (widgets after the steps)."""
    label: str
    ckpt: object                    # checkpoint file name or SplitFiles
    size: str                       # photo size the note recommends
    negative: bool                  # empty-prompt CLIP Text Encode as the unconditional input
    note: str
    steps: int = 30
    cfg: tuple = (3.5, 7.5)         # (Inversion source_cfg, Guided Edit cfg)
    guidance: float = None
    zero_negative: bool = False
    scheduler: tuple = None         # (node type, widgets after steps)


QWEN_IMAGE = SplitFiles("qwen_image_2512_fp8_e4m3fn.safetensors", ("qwen_2.5_vl_7b_fp8_scaled.safetensors",),
                        "qwen_image", "qwen_image_vae.safetensors", ("ModelSamplingAuraFlow", 3.1))
FLUX2_DEV = SplitFiles("flux2_dev_fp8mixed.safetensors", ("mistral_3_small_flux2_bf16.safetensors",), "flux2",
                       "flux2-vae.safetensors")
Z_IMAGE_TURBO = SplitFiles("z_image_turbo_bf16.safetensors", ("qwen_3_4b.safetensors",), "lumina2",
                           "ae.safetensors", ("ModelSamplingAuraFlow", 3))
HIDREAM_FULL = SplitFiles("hidream_i1_full_fp8.safetensors",
                          ("clip_l_hidream.safetensors", "clip_g_hidream.safetensors",
                           "t5xxl_fp8_e4m3fn_scaled.safetensors", "llama_3.1_8b_instruct_fp8_scaled.safetensors"),
                          None, "ae.safetensors", ("ModelSamplingSD3", 3))
CHROMA_HD = SplitFiles("Chroma1-HD-fp8mixed.safetensors", ("t5xxl_fp8_e4m3fn_scaled.safetensors",), "chroma",
                       "ae.safetensors", ("ModelSamplingAuraFlow", 1))
WAN21_T2V = SplitFiles("wan2.1_t2v_1.3B_fp16.safetensors", ("umt5_xxl_fp8_e4m3fn_scaled.safetensors",), "wan",
                       "wan_2.1_vae.safetensors", ("ModelSamplingSD3", 8))

FAMILIES = {
    "sd15": Family("SD1.5", SD15_CKPT, "512x512", True, """
The empty-prompt CLIP Text Encode is the unconditional input used by both inversion and edit."""),
    "sdxl": Family("SDXL", SDXL_CKPT, "1024x1024", False, """
SDXL: the concepts are encoded with both SDXL text encoders (the checkpoint's CLIP). The
unconditional input is left unconnected on purpose: the pack then uses zero conditioning, as the
diffusers SDXL pipeline does. The size conditioning (width/height) is taken from the latent, so
non-square images (e.g. 1216x832) need no extra node; you may connect a CLIP Text Encode (SDXL)
with the image's size to `negative` of both Inversion and Guided Edit instead."""),
    "sd35": Family("SD3.5", SD35_CKPT, "1024x1024", True, """
SD3 / SD3.5 (flow-matching MMDiT): the inversion runs on the model's own shifted sigma grid and
stays exact; each concept's mask comes from the joint attention of the image tokens to the
concept's CLIP/T5 tokens (Attention Capture's `blocks` chooses the blocks; auto is measured).
Real CFG: the empty prompt is the unconditional prediction. Without a checkpoint that includes the
text encoders, use Load Diffusion Model + TripleCLIPLoader + Load VAE instead of Load Checkpoint."""),
    "flux": Family("Flux.1 dev", FLUX_CKPT, "1024x1024", True, """
Flux dev is guidance-distilled: every prediction (inversion, edit, concepts) runs at one distilled
guidance, Inversion's flux_guidance (-1 = auto: a FluxGuidance node's value on the negative, else
3.5). The "unconditional" prediction is the empty prompt at that guidance. Masks come from the
joint attention of the image tokens to the concept's T5 tokens. Schnell works the same way (no
guidance). With separate files use Load Diffusion Model + DualCLIPLoader (type flux) + Load VAE."""),
    "qwen_image": Family("Qwen-Image", QWEN_IMAGE, "1328x1328, about 1-1.7 MP", True, """
Qwen-Image (2512 and the first release; MMDiT, Qwen2.5-VL text encoder): ModelSamplingAuraFlow
3.1 as in ComfyUI's Qwen-Image templates; the inversion runs on that shifted grid and stays exact.
Real CFG: the empty prompt is the unconditional prediction. Qwen-Image is run at cfg 2.5-4, so a
source prompt on the Inversion's `positive` gets source_cfg 4 and a target prompt on Guided
Edit's `positive` cfg 4 (set here; unused while nothing is connected). Masks come from the joint
attention of the image tokens to the concept's own tokens (the chat template is left out).
Qwen-Image-Edit's image inputs (TextEncodeQwenImageEdit, ReferenceLatent) are refused: LEDITS++
edits the inverted photo itself; Qwen-Image-Layered is refused.""", cfg=(4.0, 4.0)),
    "flux2": Family("Flux.2 dev", FLUX2_DEV, "1024x1024", True, """
Flux.2 (ComfyUI 0.33 or newer) dev is guidance-distilled like Flux.1 dev: FluxGuidance 4 on the
empty prompt, as in ComfyUI's Flux.2 templates, sets the distilled guidance of every prediction
(Inversion's flux_guidance -1 = read it from there). Flux2Scheduler (the templates' scheduler:
sigmas from steps and image size) feeds the Inversion's `sigmas`: its steps replace the
Inversion's, set its width/height to your photo's. The replay stays exact: the Inversion ends a
user schedule at the model's smallest sigma instead of 0 (schedule "exact"). Unplug it to use the
model's own grid. Reference images (ReferenceLatent) are refused. klein (flux-2-klein-4b / 9b with
qwen_3_4b.safetensors, CLIPLoader type flux2, flux2-vae) is not distilled on guidance: remove
FluxGuidance; the base model runs with real CFG, the step-distilled klein at cfg 1 (4 steps).""",
                     guidance=4.0, scheduler=("Flux2Scheduler", [1024, 1024])),
    "z_image": Family("Z-Image Turbo", Z_IMAGE_TURBO, "1024x1024", True, """
Z-Image (ComfyUI 0.33 or newer) Turbo is step-distilled: 8 steps at cfg 1 with
ModelSamplingAuraFlow 3, as ComfyUI's Turbo template runs it. Its negative is a zeroed prompt
(ConditioningZeroOut), here of the empty prompt: the unconditional prediction that the concepts'
guidance is measured against (leaving `negative` unconnected gives the same zeros). The base
(non-Turbo) Z-Image: 25-30 steps, drop ConditioningZeroOut (real CFG, cfg 4 for prompts).
Masks come from the joint attention of the image tokens to the concept's Qwen3 tokens.""",
                      steps=8, cfg=(1.0, 1.0), zero_negative=True),
    "hidream": Family("HiDream I1", HIDREAM_FULL, "1024x1024", True, """
HiDream I1 full: ModelSamplingSD3 3 as in ComfyUI's template, real CFG (cfg 5 there, set for
prompts here); the empty prompt is the unconditional prediction. dev / fast (distilled, cfg 1): use
shift 6 / 3. The concepts are encoded with all four text encoders; masks come from the attention of
the image tokens to the concept's T5 and Llama tokens. E1's instruct editing (its image input,
InstructPixToPixConditioning) is refused: invert with I1 instead.""", cfg=(5.0, 5.0)),
    "chroma": Family("Chroma", CHROMA_HD, "1024x1024", True, """
Chroma (Flux-based, T5 only, no distilled guidance): real CFG (ComfyUI's template: CFGGuider 3.5,
set for prompts here) and ModelSamplingAuraFlow 1 as in that template; the empty prompt is the
unconditional prediction. Masks come from the joint attention of the image tokens to the
concept's T5 tokens.""",
                     cfg=(3.5, 3.5)),
}

# The video template's note ({files}: the files line, {tips}: the common tips).
WAN_NOTE = """
LEDITS++ video edit (WAN 2.1 text-to-video): change a real clip by adding and removing concepts in
every frame.

1. {files} and load a short clip (832x480, 33 frames: WAN's VAE packs the
   first frame and then 4 frames per latent frame, so 4k+1 frames; trim long clips first).
2. LEDITS++ Inversion inverts the whole clip once (30 steps, skip 0.15); ModelSamplingSD3 8 as in
   ComfyUI's WAN templates.
3. Each Edit Concept is one instruction: "glasses" is added, "cat" is removed (reverse = remove).
4. Guided Edit replays the inversion with the concepts applied inside their own masks, frame by
   frame; Create Video (set fps to your clip's; WAN 2.1 makes 16 fps) and Save Video write the clip.
   Guided Edit's MASK is one mask per latent frame and concept (33 frames -> 9 latent frames; the
   first concept's masks, then the second's): the preview shows them all.
Real CFG: the empty prompt is the unconditional prediction (WAN templates run cfg 6: source_cfg /
cfg 6 are set for a source / target prompt on `positive`). Masks come from the cross-attention of
each frame's tokens to the concept's umT5 tokens.
Works with WAN's plain text-to-video models: WAN 2.1 T2V 1.3B and 14B, WAN 2.2 TI2V 5B (with
wan2.2_vae.safetensors; as a text-to-video model, no start image) and each WAN 2.2 14B T2V expert
on its own. Refused: image-to-video and first/last-frame models, VACE, Fun control / camera,
Animate, S2V and reference-frame conditioning: LEDITS++ edits the inverted clip itself.
{tips}"""
