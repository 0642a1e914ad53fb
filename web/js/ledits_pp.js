// LEDITS++ for ComfyUI: the per-step mask/attention scrubber of "LEDITS++ Guided Edit".
//
// The final-mask previews need no JavaScript (they are the host's standard image previews). This
// extension only adds, after a run, to each Guided Edit node that reported the `ledits_pp_steps`
// UI output (nodes/ui_outputs.py):
//   * "preview step"  - a slider over the recorded edit steps,
//   * "preview frame" - a slider over the clip's latent frames (only for clips, e.g. WAN video: the
//                       payload carries up to 16 evenly spaced latent frames),
//   * "preview image" - which image of the batch (only when batch > 1),
//   * "preview shows" - masks, attention or both,
//   * a canvas widget that draws that step's masks/attention per concept over a latent preview of
//     the result, with the concept legend (colour, +/-, text, coverage or "inactive").
// All state lives on the node (several edit nodes on one canvas are independent); the widgets are
// not serialised (workflows and API prompts are unchanged); nodes of other types are untouched.
// Only stable APIs are used: app.registerExtension, beforeRegisterNodeDef + onExecuted,
// node.addWidget / addCustomWidget, node.setDirtyCanvas.
import { app } from "../../../scripts/app.js";

const EXTENSION = "ledits_pp.previews";
const UI_KEY = "ledits_pp_steps";
const EDIT_NODE = "LEditsPPGuidedEdit";
const STATE = "__ledits_pp";
const W_STEP = "preview step";
const W_FRAME = "preview frame";
const W_IMAGE = "preview image";
const W_VIEW = "preview shows";
const W_CANVAS = "ledits_pp_scrubber";
const VIEWS = ["masks", "attention", "both"];
const MARGIN = 10;
const LEGEND_ROW = 16;
const MAX_PICTURE = 320;

function decodeBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

function parsePayload(p) {
  if (!p || (p.version !== 1 && p.version !== 2) || !Array.isArray(p.labels) || !p.labels.length) return null;
  const [h, w] = p.grid;
  const frames = Array.isArray(p.frames) && p.frames.length ? p.frames : [0];   // version 1: images
  const totalFrames = p.total_frames ?? 1;
  const bytes = decodeBase64(p.data);
  const expected = p.steps.length * p.labels.length * p.batch * frames.length * 2 * h * w;
  if (bytes.length !== expected) {
    console.warn(`[${EXTENSION}] step data has ${bytes.length} bytes, expected ${expected}; not shown`);
    return null;
  }
  const backgrounds = (p.backgrounds || []).map((url) => {
    const img = new Image();
    img.src = url;
    return img;
  });
  return { ...p, h, w, frames, totalFrames, bytes, backgrounds };
}

function hexToRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

// offset of (step n, concept c, image b, frame f, kind k: 0 mask / 1 attention) in the byte array
function offset(d, n, c, b, f, k) {
  const cells = d.h * d.w;
  return (((((n * d.labels.length + c) * d.batch + b) * d.frames.length + f) * 2 + k) * cells);
}

function layerCanvas(d, n, c, b, f, view) {
  const cells = d.h * d.w;
  const [r, g, bl] = hexToRgb(d.colors[c]);
  const canvas = document.createElement("canvas");
  canvas.width = d.w;
  canvas.height = d.h;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(d.w, d.h);
  const flags = d.flags[n][c];
  const at = (k) => offset(d, n, c, b, f, k);
  const mask = flags & 1 ? d.bytes.subarray(at(0), at(0) + cells) : null;
  const attn = flags & 2 ? d.bytes.subarray(at(1), at(1) + cells) : null;
  for (let i = 0; i < cells; i++) {
    let a = 0;
    if ((view === "masks" || view === "both") && mask) a = Math.max(a, mask[i] * 0.6);
    if ((view === "attention" || view === "both") && attn) a = Math.max(a, attn[i] * (view === "both" ? 0.35 : 0.8));
    image.data[i * 4] = r;
    image.data[i * 4 + 1] = g;
    image.data[i * 4 + 2] = bl;
    image.data[i * 4 + 3] = Math.round(a);
  }
  ctx.putImageData(image, 0, 0);
  return { canvas, mask, attn };
}

function coverage(mask) {
  if (!mask) return null;
  let sum = 0;
  for (let i = 0; i < mask.length; i++) sum += mask[i];
  return sum / (mask.length * 255);
}

function pictureSize(d, width) {
  const avail = Math.max(64, Math.min(MAX_PICTURE, width - 2 * MARGIN));
  const scale = avail / Math.max(d.h, d.w);
  return [Math.round(d.w * scale), Math.round(d.h * scale)];
}

function widgetHeight(node, width) {
  const d = node[STATE]?.data;
  if (!d) return 0;
  const [, ph] = pictureSize(d, width);
  return ph + 24 + d.labels.length * LEGEND_ROW + 8;
}

function drawScrubber(ctx, node, width, y) {
  const state = node[STATE];
  const d = state?.data;
  if (!d) return;
  const n = Math.max(0, Math.min(d.steps.length - 1, state.step));
  const b = Math.max(0, Math.min(d.batch - 1, state.image));
  const f = Math.max(0, Math.min(d.frames.length - 1, state.frame));
  const [pw, ph] = pictureSize(d, width);
  const x0 = Math.round((width - pw) / 2);
  const top = y + 20;
  ctx.save();
  ctx.fillStyle = "#ddd";
  ctx.font = "12px sans-serif";
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  const image = d.batch > 1 ? `, image ${b + 1}/${d.batch}` : "";
  const frame = d.totalFrames > 1 ? `, frame ${d.frames[f] + 1}/${d.totalFrames}` : "";
  ctx.fillText(`LEDITS++ step ${d.steps[n] + 1}/${d.total_steps}${frame}${image}`, x0, y + 10);
  ctx.fillStyle = "#111";
  ctx.fillRect(x0, top, pw, ph);
  const bg = d.backgrounds[b * d.frames.length + f] ?? d.backgrounds[b];
  if (bg && bg.complete && bg.naturalWidth) {
    ctx.imageSmoothingEnabled = true;
    ctx.globalAlpha = 0.85;
    ctx.drawImage(bg, x0, top, pw, ph);
    ctx.globalAlpha = 1;
  } else if (bg && !bg.__ledits_wait) {
    bg.__ledits_wait = true;
    bg.addEventListener("load", () => node.setDirtyCanvas?.(true, true), { once: true });
  }
  ctx.imageSmoothingEnabled = false;
  // the canvas redraws on every mouse move: build the overlays once per (step, image, view)
  const key = `${n}/${b}/${f}/${state.view}`;
  if (state.layersKey !== key) {
    state.layers = d.labels.map((_, c) => layerCanvas(d, n, c, b, f, state.view));
    state.layersKey = key;
  }
  const rows = state.layers;
  for (const layer of rows) ctx.drawImage(layer.canvas, x0, top, pw, ph);
  ctx.strokeStyle = "#666";
  ctx.strokeRect(x0 + 0.5, top + 0.5, pw - 1, ph - 1);
  let ly = top + ph + 6;
  for (let c = 0; c < d.labels.length; c++) {
    const label = d.labels[c];
    const sign = label.startsWith("- ") ? "\u2212" : "+";
    const text = label.replace(/^[+-] /, "");
    const cover = coverage(rows[c].mask);
    const status = d.flags[n][c] === 0 ? "inactive" : cover === null ? "attention only" : `${Math.round(cover * 100)}%`;
    ctx.fillStyle = d.colors[c];
    ctx.fillRect(x0, ly + 2, 11, 11);
    ctx.fillStyle = "#ddd";
    ctx.fillText(`${sign} ${text}  (${status})`, x0 + 17, ly + 8);
    ly += LEGEND_ROW;
  }
  ctx.restore();
}

function findWidget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

function noSerialize(widget) {
  if (!widget) return widget;
  widget.serialize = false;
  widget.options = { ...(widget.options || {}), serialize: false };
  return widget;
}

function redraw(node) {
  node.setDirtyCanvas?.(true, true);
  node.graph?.setDirtyCanvas?.(true, true);
}

function ensureWidgets(node) {
  const state = node[STATE];
  const d = state.data;
  let step = findWidget(node, W_STEP);
  if (!step) {
    // the slider shows the 1-based position in the recorded steps; the canvas title the edit step
    step = noSerialize(node.addWidget("slider", W_STEP, 1, (value) => {
      const s = node[STATE];
      if (!s?.data) return;
      s.step = Math.max(0, Math.min(s.data.steps.length - 1, Math.round(Number(value) || 1) - 1));
      const w = findWidget(node, W_STEP);
      if (w) w.value = s.step + 1;
      redraw(node);
    }, { min: 1, max: 2, step: 10, step2: 1, precision: 0, round: 1, serialize: false }));
  }
  step.options.min = 1;
  step.options.max = Math.max(2, d.steps.length);
  step.value = state.step + 1;
  step.disabled = d.steps.length < 2;

  // clips: a slider over the latent frames in the payload (the canvas title says which frame of all)
  let frame = findWidget(node, W_FRAME);
  if (!frame && d.frames.length > 1) {
    frame = noSerialize(node.addWidget("slider", W_FRAME, 1, (value) => {
      const s = node[STATE];
      if (!s?.data) return;
      s.frame = Math.max(0, Math.min(s.data.frames.length - 1, Math.round(Number(value) || 1) - 1));
      const w = findWidget(node, W_FRAME);
      if (w) w.value = s.frame + 1;
      redraw(node);
    }, { min: 1, max: 2, step: 10, step2: 1, precision: 0, round: 1, serialize: false }));
  }
  if (frame) {
    frame.options.min = 1;
    frame.options.max = Math.max(2, d.frames.length);
    frame.value = state.frame + 1;
    frame.disabled = d.frames.length < 2;
  }

  let view = findWidget(node, W_VIEW);
  if (!view) {
    view = noSerialize(node.addWidget("combo", W_VIEW, state.view, (value) => {
      node[STATE].view = VIEWS.includes(value) ? value : "masks";
      redraw(node);
    }, { values: VIEWS, serialize: false }));
  }
  view.value = state.view;

  const images = Array.from({ length: d.batch }, (_, i) => `${i + 1} of ${d.batch}`);
  let image = findWidget(node, W_IMAGE);
  if (d.batch > 1 && !image) {
    image = noSerialize(node.addWidget("combo", W_IMAGE, images[0], (value) => {
      const i = parseInt(String(value), 10);
      node[STATE].image = Number.isFinite(i) ? i - 1 : 0;
      redraw(node);
    }, { values: images, serialize: false }));
  }
  if (image) {
    image.options.values = images;
    state.image = Math.min(state.image, d.batch - 1);
    image.value = images[Math.max(0, state.image)] ?? images[0];
  }

  if (!findWidget(node, W_CANVAS)) {
    node.addCustomWidget(noSerialize({
      name: W_CANVAS,
      type: "ledits_pp_scrubber",
      value: "",
      serialize: false,
      options: { serialize: false },
      draw(ctx, n, width, y) { drawScrubber(ctx, n, width, y); },
      computeSize(width) { return [width ?? node.size[0], widgetHeight(node, width ?? node.size[0])]; },
    }));
  }
  const size = node.computeSize?.();
  if (size) node.setSize?.([Math.max(node.size[0], size[0], 280), Math.max(node.size[1], size[1])]);
  redraw(node);
}

function onStepsOutput(node, output) {
  const payload = output?.[UI_KEY]?.[0];
  let data = null;
  try {
    data = parsePayload(payload);
  } catch (error) {
    console.warn(`[${EXTENSION}] could not read the step data:`, error);
  }
  if (!data) return;
  const previous = node[STATE];
  node[STATE] = {
    data,
    step: data.steps.length - 1,           // open on the last step
    image: previous ? Math.min(previous.image, data.batch - 1) : 0,
    frame: previous ? Math.min(previous.frame ?? 0, data.frames.length - 1) : 0,
    view: previous?.view ?? "masks",
  };
  ensureWidgets(node);
}

app.registerExtension({
  name: EXTENSION,
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== EDIT_NODE) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      const result = onExecuted?.apply(this, arguments);
      try {
        onStepsOutput(this, output);
      } catch (error) {
        console.warn(`[${EXTENSION}] scrubber not shown:`, error);
      }
      return result;
    };
  },
});
