"""The pack's edit recomputed with ledits_core and the model's own apply_model: the reference that
the node-path tests (UNets and DiTs) compare GuidedEdit with."""
import torch


def record_batch_order(model):
    """A clone that records the order in which the host batches the conds of each model call
    (batch composition changes float round-off, so the core path must batch the same way)."""
    model = model.clone()
    order = []

    def record_order(apply_model, args):
        order.append(list(args["cond_or_uncond"]))
        return apply_model(args["input"], args["timestep"], **args["c"])
    model.set_model_unet_function_wrapper(record_order)
    return model, order


def core_path_edit(core, model, latent, inversion, negative, concepts, steps, seed, chunk_order, form,
                   pooled=False, guidance=None):
    """(core inversion, edited latent) for the inputs GuidedEdit got; conds are numbered as the
    host numbers them (1 = negative, 2 + c = concept c). `pooled` passes the conds' pooled output
    as `y` (SD3, Flux); `guidance` is the distilled guidance of every prediction (Flux dev)."""
    import comfy.model_management
    comfy.model_management.load_models_gpu([model])
    base = model.model
    x0 = base.process_latent_in(latent["samples"].clone())
    conds = {1: negative[0]}
    conds.update({2 + c: concept.conditioning[0] for c, concept in enumerate(concepts)})

    def predict(x, sigma, indices):
        b, n = x.shape[0], len(indices)
        extra = {}
        if pooled:
            extra["y"] = torch.cat([conds[i][1]["pooled_output"].repeat(b, 1) for i in indices])
        if guidance is not None:
            extra["guidance"] = torch.full((b * n,), guidance)
        with torch.inference_mode():
            out = base.apply_model(x.repeat(n, 1, 1, 1), sigma.expand(b * n),
                                   c_crossattn=torch.cat([conds[i][0].repeat(b, 1, 1) for i in indices]),
                                   **extra).float()
        return {i: out[j * b:(j + 1) * b] for j, i in enumerate(indices)}

    sigmas = inversion.sigmas
    noise = core.draw_inversion_noise(x0.shape, steps, seed)
    ours = core.invert(lambda x, s, i: predict(x, s, [1])[1], x0, sigmas, noise, form=form)
    params = [c.params for c in concepts]

    def edit(x, s, i):
        preds = predict(x, s, chunk_order)
        concept_preds = [preds[2 + c] for c in range(len(concepts))]
        return core.apply_edit_guidance(preds[1], preds[1], concept_preds, params, i)[0]
    return ours, base.process_latent_out(core.replay(edit, ours.x_T, sigmas, ours.zs, form=form))


def core_path_grouped(core, model, latent, inversion, negative, concepts, seed, calls, model_inputs=None):
    """(core inversion, edited latent) as GuidedEdit ran it on a flow model whose conds the host
    batches in several calls per step (`calls`: the cond indices of each call, 1 = negative,
    2 + c = concept c; texts of different lengths run separately). Latents of any rank (5-D frame
    axes too); `model_inputs(context)` gives apply_model's other inputs (e.g. num_tokens)."""
    import comfy.model_management
    comfy.model_management.load_models_gpu([model])
    base = model.model
    conds = {1: negative[0][0], **{2 + c: concept.conditioning[0][0] for c, concept in enumerate(concepts)}}

    def predict(x, sigma, groups):
        out, b = {}, x.shape[0]
        for group in groups:
            context = torch.cat([conds[i].repeat(b, 1, 1) for i in group])
            extra = model_inputs(context) if model_inputs else {}
            with torch.inference_mode():
                pred = base.apply_model(x.repeat(len(group), *[1] * (x.dim() - 1)), sigma.expand(b * len(group)),
                                        c_crossattn=context, **extra).float()
            out.update({i: pred[j * b:(j + 1) * b] for j, i in enumerate(group)})
        return out

    x0 = base.process_latent_in(latent["samples"].clone())
    noise = core.draw_inversion_noise(x0.shape, inversion.steps, seed)
    ours = core.invert(lambda x, s, i: predict(x, s, [[1]])[1], x0, inversion.sigmas, noise, form=core.FLOW)
    params = [c.params for c in concepts]

    def edit(x, s, i):
        preds = predict(x, s, calls)
        return core.apply_edit_guidance(preds[1], preds[1], [preds[2 + c] for c in range(len(concepts))], params, i)[0]
    return ours, base.process_latent_out(core.replay(edit, ours.x_T, inversion.sigmas, ours.zs, form=core.FLOW))
