"""Analyses the studies cite but did not run, computed by a run after training (``train.analysis``) and stored
under ``analysis`` in its result: intruder dimensions (``intruders``) and forgetting (``forgetting``)."""
from __future__ import annotations

import copy


def snapshot(model, head_modules=()) -> dict:
    """Before training: the model's state (on the CPU) and the names of the body's 2-D linear weights
    (nn.Linear and GPT-2's Conv1D) that intruder dimensions examine."""
    import torch

    matrices = []
    for name, module in model.named_modules():
        if name and name.split(".")[0] not in head_modules and (
                isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"):
            if getattr(module, "weight", None) is not None and module.weight.dim() == 2:
                matrices.append(f"{name}.weight")
    return {"state": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}, "matrices": matrices}


def effective_weights(model, method) -> tuple[dict | None, str | None]:
    """The trained model's weights with the method folded in, under the base model's parameter names, or
    (None, why not). Prompt methods leave every weight unchanged: the base model's weights."""
    try:
        merged = method.merge(copy.deepcopy(model))
    except ValueError as exc:
        if hasattr(model, "get_base_model"):  # prompt methods: virtual tokens, no weight change
            return {k: v.detach().cpu() for k, v in model.get_base_model().state_dict().items()}, None
        return None, str(exc).split(";")[0]
    return {k: v.detach().cpu() for k, v in merged.state_dict().items()}, None


def run_analyses(s) -> dict:
    """What ``train.analysis`` asks for, each either a result or ``{"skipped": reason}``; ``s.initial_snapshot``
    is the ``snapshot`` taken before the method was applied."""
    spec, initial = s.run.train.analysis, s.initial_snapshot
    out: dict = {}
    if not spec.intruders and not spec.forgetting_text:
        return out
    weights, why = effective_weights(s.model, s.method)
    if spec.intruders:
        from .intruders import intruder_dimensions

        before = {k: initial["state"][k] for k in initial["matrices"]}
        out["intruders"] = {"skipped": why} if weights is None else intruder_dimensions(
            before, weights, spec.top_k, spec.threshold)
    if spec.forgetting_text:
        out["forgetting"] = _forgetting(s, spec, initial["state"], weights, why)
    return out


def _forgetting(s, spec, initial_state, weights, why) -> dict:
    from ..models import ensure_pad_token, load_config_and_tokenizer
    from .forgetting import forgetting, language_model

    if weights is None:
        return {"skipped": why}
    texts = held_out_texts(spec.forgetting_text, spec.forgetting_samples, spec.forgetting_field)
    config, tok, where, info = load_config_and_tokenizer(s.run.model)
    ensure_pad_token(tok)
    lm, why = language_model(where, config, info, s.run.model.revision)
    if lm is None:
        return {"skipped": why}
    config_of = getattr(s.model, "peft_config", None)
    prompt = s.model if config_of and any(c.is_prompt_learning for c in config_of.values()) else None
    return {**forgetting(lm, tok, texts, initial_state, weights, s.run.max_length(), s.device, prompt),
            "source": spec.forgetting_text}


def held_out_texts(path: str, limit: int, field: str = "text") -> list[str]:
    """Texts of the target language, one per line (``.txt``) or a field of JSON lines; the first ``limit``
    non-empty ones."""
    import json
    from pathlib import Path

    from ..data.loading import DataError

    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"train.analysis.forgetting_text: file '{p}' does not exist")
    texts = []
    with open(p, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                texts.append(str(json.loads(line).get(field) or "") if p.suffix == ".jsonl" else line)
            if len(texts) >= limit:
                break
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise DataError(f"train.analysis.forgetting_text: no text in '{p}'")
    return texts
