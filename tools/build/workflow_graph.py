"""The graph model of tools/build/build_workflows.py: nodes, links and groups in the front end's UI format
(version 0.4 of its graph schema: nodes[] with positional widgets_values, links[] as
[id, origin_id, origin_slot, target_id, target_slot, type], groups, extra). Node inputs[] list the
socket inputs in definition order (widgets are restored from the node definition on load).
Needs only Python; never imports ComfyUI or the pack."""
import pathlib
import tomllib

# The pack's Registry id and version, recorded in every LEDITS++ node (cnr_id / ver): read from
# pyproject.toml, so a release bump reaches the workflows when they are regenerated.
_PROJECT = tomllib.loads((pathlib.Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
PACK_ID, PACK_VERSION = _PROJECT["name"], _PROJECT["version"]
CORE_VERSION = "0.3.64"

# type -> (socket inputs [(name, type)], outputs [(name, type)]), in definition order.
NODE_TYPES = {
    "CheckpointLoaderSimple": ([], [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")]),
    "UNETLoader": ([], [("MODEL", "MODEL")]),
    "CLIPLoader": ([], [("CLIP", "CLIP")]),
    "QuadrupleCLIPLoader": ([], [("CLIP", "CLIP")]),
    "VAELoader": ([], [("VAE", "VAE")]),
    "ModelSamplingAuraFlow": ([("model", "MODEL")], [("MODEL", "MODEL")]),
    "ModelSamplingSD3": ([("model", "MODEL")], [("MODEL", "MODEL")]),
    "FluxGuidance": ([("conditioning", "CONDITIONING")], [("CONDITIONING", "CONDITIONING")]),
    "Flux2Scheduler": ([], [("SIGMAS", "SIGMAS")]),
    "ConditioningZeroOut": ([("conditioning", "CONDITIONING")], [("CONDITIONING", "CONDITIONING")]),
    "LoadVideo": ([], [("VIDEO", "VIDEO")]),
    "GetVideoComponents": ([("video", "VIDEO")], [("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT")]),
    "CreateVideo": ([("images", "IMAGE"), ("audio", "AUDIO")], [("VIDEO", "VIDEO")]),
    "SaveVideo": ([("video", "VIDEO")], []),
    "LoadImage": ([], [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "VAEEncode": ([("pixels", "IMAGE"), ("vae", "VAE")], [("LATENT", "LATENT")]),
    "VAEDecode": ([("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")]),
    "CLIPTextEncode": ([("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")]),
    "SaveImage": ([("images", "IMAGE")], []),
    "PreviewImage": ([("images", "IMAGE")], []),
    "MaskToImage": ([("mask", "MASK")], [("IMAGE", "IMAGE")]),
    "ImageBlend": ([("image1", "IMAGE"), ("image2", "IMAGE")], [("IMAGE", "IMAGE")]),
    "DisableNoise": ([], [("NOISE", "NOISE")]),
    "SamplerCustomAdvanced": ([("noise", "NOISE"), ("guider", "GUIDER"), ("sampler", "SAMPLER"),
                               ("sigmas", "SIGMAS"), ("latent_image", "LATENT")],
                              [("output", "LATENT"), ("denoised_output", "LATENT")]),
    "LEditsPPInversion": ([("model", "MODEL"), ("latent", "LATENT"), ("positive", "CONDITIONING"),
                           ("negative", "CONDITIONING"), ("sigmas", "SIGMAS")],
                          [("inversion", "LEDITS_INVERSION"), ("noisy_latent", "LATENT"), ("sigmas", "SIGMAS")]),
    "LEditsPPEditConcept": ([("clip", "CLIP"), ("mask", "MASK"), ("concepts", "LEDITS_CONCEPTS")],
                            [("concepts", "LEDITS_CONCEPTS")]),
    "LEditsPPAttentionCapture": ([("model", "MODEL")], [("model", "MODEL")]),
    "LEditsPPMaskFromAttention": ([("attention", "LEDITS_ATTENTION")], [("mask", "MASK"), ("heatmap", "IMAGE")]),
    "LEditsPPGuidedEdit": ([("model", "MODEL"), ("inversion", "LEDITS_INVERSION"), ("concepts", "LEDITS_CONCEPTS"),
                            ("positive", "CONDITIONING"), ("negative", "CONDITIONING")],
                           [("latent", "LATENT"), ("masks", "MASK"), ("attention", "LEDITS_ATTENTION")]),
    "LEditsPPGuider": ([("model", "MODEL"), ("inversion", "LEDITS_INVERSION"), ("concepts", "LEDITS_CONCEPTS"),
                        ("positive", "CONDITIONING"), ("negative", "CONDITIONING")], [("guider", "GUIDER")]),
    "LEditsPPSampler": ([("inversion", "LEDITS_INVERSION")], [("sampler", "SAMPLER")]),
    "Note": ([], []),
}
UI_ONLY = {"Note"}

# Group colours as the front end offers them.
COLORS = {"load": "#3f789e", "invert": "#8A8", "concepts": "#a1309b", "edit": "#b58b2a", "out": "#88A"}


def default_size(kind, widgets):
    ins, outs = NODE_TYPES[kind]
    if kind in ("LoadImage", "LoadVideo"):
        return [320, 330]
    if kind in ("SaveImage", "PreviewImage"):
        return [340, 300]
    if kind == "Note":
        return [420, 360]
    return [320, 46 + 22 * max(len(ins), len(outs)) + 26 * len(widgets)]


class Workflow:
    def __init__(self, name, title, description):
        self.name, self.title, self.description = name, title, description
        self.nodes, self.links, self.groups = {}, [], []

    def node(self, node_id, kind, pos, widgets=(), title=None, size=None, color=None):
        ins, outs = NODE_TYPES[kind]
        node = {
            "id": node_id, "type": kind, "pos": list(pos), "size": list(size or default_size(kind, widgets)),
            "flags": {}, "order": 0, "mode": 0,
            "inputs": [{"name": n, "type": t, "link": None} for n, t in ins],
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i} for i, (n, t) in enumerate(outs)],
            "properties": {} if kind in UI_ONLY else {
                "Node name for S&R": kind,
                "cnr_id": PACK_ID if kind.startswith("LEditsPP") else "comfy-core",
                "ver": PACK_VERSION if kind.startswith("LEditsPP") else CORE_VERSION},
            "widgets_values": list(widgets),
        }
        if not ins:
            del node["inputs"]
        if kind == "Note":
            del node["outputs"]
            node["properties"] = {"text": ""}
            color = color or ("#432", "#653")
        if title:
            node["title"] = title
        if color:
            node["color"], node["bgcolor"] = color
        self.nodes[node_id] = node
        return node_id

    def link(self, src, src_slot, dst, dst_input):
        src_node, dst_node = self.nodes[src], self.nodes[dst]
        out = src_node["outputs"][src_slot]
        slot = next(i for i, inp in enumerate(dst_node["inputs"]) if inp["name"] == dst_input)
        assert dst_node["inputs"][slot]["link"] is None, (dst, dst_input)
        assert dst_node["inputs"][slot]["type"] == out["type"], (src, src_slot, dst, dst_input)
        link_id = len(self.links) + 1
        self.links.append([link_id, src, src_slot, dst, slot, out["type"]])
        out["links"].append(link_id)
        dst_node["inputs"][slot]["link"] = link_id

    def group(self, title, members, color):
        xs, ys, xe, ye = [], [], [], []
        for m in members:
            n = self.nodes[m]
            xs.append(n["pos"][0])
            ys.append(n["pos"][1] - 30)                       # the title bar sits above pos
            xe.append(n["pos"][0] + n["size"][0])
            ye.append(n["pos"][1] + n["size"][1])
        x, y = min(xs) - 15, min(ys) - 50
        self.groups.append({"id": len(self.groups) + 1, "title": title, "bounding": [x, y, max(xe) + 15 - x,
                            max(ye) + 15 - y], "color": color, "font_size": 24, "flags": {}})

    def _order(self):
        deps = {i: set() for i in self.nodes}
        for _, src, _, dst, _, _ in self.links:
            deps[dst].add(src)
        order, done = [], set()
        while len(order) < len(self.nodes):
            ready = sorted(i for i in self.nodes if i not in done and deps[i] <= done)
            order += ready
            done.update(ready)
        for k, i in enumerate(order):
            self.nodes[i]["order"] = k

    def to_json(self):
        self._order()
        for node in self.nodes.values():
            for out in node.get("outputs", []):
                if not out["links"]:
                    out["links"] = None if node["type"].startswith("LEditsPP") else []
        return {
            "last_node_id": max(self.nodes), "last_link_id": len(self.links),
            "nodes": [self.nodes[i] for i in sorted(self.nodes)], "links": self.links, "groups": self.groups,
            "config": {}, "extra": {"ds": {"scale": 0.75, "offset": [40, 40]}}, "version": 0.4,
        }
