"""Workflow thumbnails for tools/build/build_workflows.py: a diagram of the graph itself (node boxes at
their positions, links, groups) drawn with Pillow. They show the structure, not a result image."""

TYPE_COLORS = {"MODEL": (180, 160, 255), "CLIP": (255, 210, 80), "VAE": (255, 110, 110),
               "LATENT": (255, 150, 220), "IMAGE": (100, 180, 255), "MASK": (120, 220, 160),
               "CONDITIONING": (255, 170, 60), "SIGMAS": (200, 200, 200), "NOISE": (200, 200, 200),
               "GUIDER": (160, 255, 250), "SAMPLER": (220, 220, 130),
               "VIDEO": (120, 200, 255)}


def _font(size):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:                                   # Pillow < 10.1
        return ImageFont.load_default()


def _fit(draw, text, width, font):
    while text and draw.textlength(text, font=font) > width:
        text = text[:-1]
    return text


def thumbnail(wf, path, size=(640, 400)):
    from PIL import Image, ImageDraw
    data = wf.to_json()
    nodes = [n for n in data["nodes"] if n["type"] != "Note"]
    x0 = min(min(n["pos"][0] for n in nodes), min(g["bounding"][0] for g in data["groups"])) - 20
    y0 = min(min(n["pos"][1] - 30 for n in nodes), min(g["bounding"][1] for g in data["groups"])) - 20
    x1 = max(max(n["pos"][0] + n["size"][0] for n in nodes), max(g["bounding"][0] + g["bounding"][2]
                                                                     for g in data["groups"])) + 20
    y1 = max(max(n["pos"][1] + n["size"][1] for n in nodes), max(g["bounding"][1] + g["bounding"][3]
                                                                     for g in data["groups"])) + 20
    header = 56
    scale = min(size[0] / (x1 - x0), (size[1] - header) / (y1 - y0))
    img = Image.new("RGB", size, (32, 33, 36))
    draw = ImageDraw.Draw(img)

    def tx(x, y):
        return ((x - x0) * scale, header + (y - y0) * scale)

    for g in data["groups"]:
        x, y, w, h = g["bounding"]
        c = g["color"].lstrip("#")
        c = tuple(int(c[i] * 2, 16) for i in range(3)) if len(c) == 3 else tuple(int(c[i:i + 2], 16)
                                                                                  for i in (0, 2, 4))
        draw.rectangle([tx(x, y), tx(x + w, y + h)], fill=tuple(v // 3 for v in c), outline=c)
        gx, gy = tx(x + 8, y + 6)
        draw.text((gx, gy), _fit(draw, g["title"], w * scale - 12, _font(10)), fill=c, font=_font(10))
    by_id = {n["id"]: n for n in nodes}

    def slot_y(node, i):
        return node["pos"][1] + 14 + 22 * i

    for _, src, s_slot, dst, d_slot, kind in data["links"]:
        a, b = by_id[src], by_id[dst]
        p0 = tx(a["pos"][0] + a["size"][0], slot_y(a, s_slot))
        p3 = tx(b["pos"][0], slot_y(b, d_slot))
        dx = max(20.0, (p3[0] - p0[0]) / 2)
        pts = []
        for k in range(21):
            t = k / 20
            u = 1 - t
            pts.append((u ** 3 * p0[0] + 3 * u * u * t * (p0[0] + dx) + 3 * u * t * t * (p3[0] - dx) + t ** 3 * p3[0],
                        u ** 3 * p0[1] + 3 * u * u * t * p0[1] + 3 * u * t * t * p3[1] + t ** 3 * p3[1]))
        draw.line(pts, fill=TYPE_COLORS.get(kind, (230, 230, 230)), width=2)
    small = _font(10)
    for n in nodes:
        x, y = n["pos"]
        w, h = n["size"]
        ours = n["type"].startswith("LEditsPP")
        body, bar = ((60, 44, 84), (140, 90, 200)) if ours else ((53, 53, 53), (80, 80, 80))
        draw.rectangle([tx(x, y - 30), tx(x + w, y + h)], fill=body, outline=bar)
        draw.rectangle([tx(x, y - 30), tx(x + w, y)], fill=bar)
        label = n.get("title") or n["type"].replace("LEditsPP", "LEDITS++ ")
        px, py = tx(x + 6, y - 27)
        draw.text((px, py), _fit(draw, label, w * scale - 4, small), fill=(240, 240, 240), font=small)
        if n["type"] == "LEditsPPEditConcept":
            sign = "- " if n["widgets_values"][3] else "+ "
            draw.text(tx(x + 10, y + 40), sign + n["widgets_values"][0], fill=(255, 230, 120), font=_font(16))
    draw.rectangle([0, 0, size[0], header - 8], fill=(20, 20, 24))
    draw.text((12, 8), wf.title, fill=(255, 255, 255), font=_font(20))
    draw.text((12, 32), "graph diagram (ComfyUI LEDITS++ pack)", fill=(170, 170, 180), font=_font(12))
    img.save(path, "JPEG", quality=85, optimize=True)
