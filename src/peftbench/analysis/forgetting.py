"""Forgetting: the base model's language-modelling loss on held-out text of the target language, before and
after fine-tuning (the fine-tuned body under the checkpoint's own LM head). Decoders: causal LM loss;
encoders: masked-LM loss (15% of tokens masked with a fixed seed) where the checkpoint has an MLM head."""
from __future__ import annotations

import math

import torch

from ..errors import first_line


def language_model(where, config, info: dict, revision=None):
    """(LM-head model of the checkpoint, None) or (None, why not)."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    from ..families import detect

    family = detect(config).family.value
    if family == "encoder-decoder":
        return None, "forgetting is measured for encoders (MLM) and decoders (causal LM), not encoder-decoders"
    cls = AutoModelForCausalLM if family == "decoder" else AutoModelForMaskedLM
    try:
        if info["source_kind"] == "tiny":
            with torch.random.fork_rng():
                torch.manual_seed(0)  # the tiny "pretrained" weights, as the run loads them
                return cls.from_config(config), None
        model, loading = cls.from_pretrained(where, config=config, revision=revision, output_loading_info=True)
    except (OSError, ValueError) as exc:
        return None, f"no {cls.__name__[9:]} head for this checkpoint: {first_line(exc, 120)}"
    tied = getattr(config, "tie_word_embeddings", False)
    head_missing = [k for k in sorted(loading.get("missing_keys", [])) if ("lm_head" in k or "cls." in k or "predictions" in k)
                    and not (tied and (k == "lm_head.weight" or k.endswith("decoder.weight")))]  # tied: the embeddings
    if head_missing:
        return None, f"the checkpoint has no trained LM head ({head_missing[0]} missing): its loss would be meaningless"
    return model, None


def lm_loss(model, tokenizer, texts: list[str], max_length: int, device, batch_size: int = 8) -> float:
    """Mean token cross-entropy over ``texts`` (causal, or masked for MLM models)."""
    model.eval().to(device)
    masked = "MaskedLM" in type(getattr(model, "get_base_model", lambda: model)()).__name__
    gen = torch.Generator().manual_seed(0)
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt")
            labels = enc["input_ids"].clone()
            labels[enc["attention_mask"] == 0] = -100
            if masked:
                special = torch.tensor([[t in tokenizer.all_special_ids for t in row] for row in labels.tolist()])
                pick = (torch.rand(labels.shape, generator=gen) < 0.15) & ~special & (labels != -100)
                labels[~pick] = -100
                enc["input_ids"] = enc["input_ids"].masked_fill(pick, tokenizer.mask_token_id)
            logits = model(**{k: v.to(device) for k, v in enc.items()}).logits.float()
            logits = logits[:, -labels.shape[1]:]  # a prompted model's virtual tokens come first: not scored
            if not masked:
                logits, labels = logits[:, :-1], labels[:, 1:]
            labels = labels.to(device)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                     ignore_index=-100, reduction="sum")
            total += float(loss)
            count += int((labels != -100).sum())
    return total / count if count else math.nan


def prompted(lm, task_model):
    """The LM with the task model's trained virtual tokens (prompt / P-tuning) or prefixes (prefix tuning) in
    front of every text, through peft itself: the adapter active, as peft's method comparison measures
    forgetting. Decoders as ``CAUSAL_LM``, encoders as ``FEATURE_EXTRACTION`` (their MLM head scores)."""
    import copy

    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    name = getattr(task_model, "active_adapter", "default")
    config = copy.deepcopy(task_model.peft_config[name])
    config.task_type = "CAUSAL_LM" if "CausalLM" in type(lm).__name__ else "FEATURE_EXTRACTION"
    config.inference_mode = True
    wrapped = get_peft_model(lm, config)
    state = {k: v for k, v in get_peft_model_state_dict(task_model, adapter_name=name).items()
             if k == "prompt_embeddings"}
    set_peft_model_state_dict(wrapped, state)
    return wrapped.eval()


def forgetting(lm, tokenizer, texts: list[str], initial: dict, fine_tuned: dict, max_length: int, device,
               prompt_model=None) -> dict:
    """LM loss under the checkpoint's LM head with the body the run started from (``initial``), then with the
    fine-tuned body (``fine_tuned``: the task model's merged state dict); keys shared with the LM model are
    copied in (for a real checkpoint the initial body is the LM model's own). A prompt method
    (``prompt_model``: the trained peft model) changes no weight: "after" is the LM with its virtual tokens or
    prefixes active (``prompted``); without them forgetting would be zero by construction."""
    own = lm.state_dict()
    shared = [k for k, v in fine_tuned.items() if k in own and own[k].shape == v.shape and k in initial]
    lm.load_state_dict({k: initial[k] for k in shared}, strict=False)
    before = lm_loss(lm, tokenizer, texts, max_length, device)
    changed = sum(not torch.equal(initial[k].cpu(), fine_tuned[k].cpu()) for k in shared)
    lm.load_state_dict({k: fine_tuned[k] for k in shared}, strict=False)
    objective = type(lm).__name__
    if prompt_model is not None:
        lm = prompted(lm, prompt_model)
    after = lm_loss(lm, tokenizer, texts, max_length, device)
    return {"lm_loss_before": before, "lm_loss_after": after, "increase": after - before,
            "perplexity_before": math.exp(before) if before < 50 else None,
            "perplexity_after": math.exp(after) if after < 50 else None, "texts": len(texts),
            "tensors_shared": len(shared), "tensors_changed": changed, "objective": objective,
            "adapter_active": prompt_model is not None}
