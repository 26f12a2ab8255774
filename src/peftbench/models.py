"""Model sources (hub id, local folder, GGUF file, tiny in-process) and architecture families.

``inspect_model`` reads a source's config and tokenizer (no weights) and finds its ``Architecture``;
``load_weights`` then loads the model with the head the task asked for.  What differs per architecture
(head classes, padding side) lives in ``families``, not here.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer

from . import registry
from .config import ModelSpec
from .data.cache import peftbench_cache
from .families import HEAD_MODULES, Architecture, Family, Head, HeadKind, detect, model_type
from .errors import OneLine, first_line


class ModelLoadError(OneLine, RuntimeError):
    """A one-line, user-facing model loading error."""


def remote_code(spec: ModelSpec) -> dict:
    """``trust_remote_code`` only where the config asks for it (transformers' default, off, otherwise)."""
    return {"trust_remote_code": True} if spec.trust_remote_code else {}


def _package_path(source: str) -> Path:
    """``package:<module>/<subfolder>``: a checkpoint folder shipped inside an installed Python package."""
    import importlib.util

    module, _, sub = source.split(":", 1)[1].partition("/")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError(f"model source '{source}': Python package '{module}' is not installed; pip install it "
                             "(the demo needs: pip install -e .[demo])")
    path = Path(list(found.submodule_search_locations)[0]) / sub
    if not path.is_dir():
        raise ModelLoadError(f"model source '{source}': no folder '{sub}' inside package '{module}'")
    return path


def _kind(spec: ModelSpec) -> str:
    if spec.source.startswith("tiny:"):
        return "tiny"
    if spec.source.startswith("package:"):
        return "package"
    if spec.source.endswith(".gguf") or spec.gguf_file:
        return "gguf"
    if Path(spec.source).expanduser().is_dir():
        return "local"
    if Path(spec.source).expanduser().exists():
        raise ModelLoadError(f"model source '{spec.source}' is a file but not a .gguf file; "
                             "give a checkpoint folder, a .gguf file, a hub id or tiny:<family>")
    return "hub"


def _gguf_expand(spec: ModelSpec) -> Path:
    """Expand a GGUF file to an fp32 safetensors checkpoint once; later loads read the cache."""
    if spec.gguf_file:
        root, fname = spec.source, spec.gguf_file
        key_src = f"{spec.source}::{spec.gguf_file}::{spec.revision}"
        local = Path(root).expanduser() / fname
        if local.exists():
            st = local.stat()
            key_src = f"{local.resolve()}::{st.st_size}::{st.st_mtime_ns}"
    else:
        local = Path(spec.source).expanduser()
        if not local.exists():
            raise ModelLoadError(f"GGUF file '{spec.source}' does not exist; check the path")
        root, fname = str(local.parent), local.name
        st = local.stat()
        key_src = f"{local.resolve()}::{st.st_size}::{st.st_mtime_ns}"
    target = peftbench_cache() / "gguf" / hashlib.sha256(key_src.encode()).hexdigest()[:16]
    if (target / "DONE").exists():
        return target
    from transformers import AutoModelForCausalLM

    try:
        tok = AutoTokenizer.from_pretrained(root, gguf_file=fname, revision=spec.revision)
        model = AutoModelForCausalLM.from_pretrained(root, gguf_file=fname, revision=spec.revision, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load GGUF '{fname}' from '{root}': {first_line(exc, 10_000)}") from None
    # a GGUF-loaded model refuses save_pretrained (it counts as quantized): copy its fp32 weights into a
    # plain model of the same config and save that
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    clean = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(model.state_dict(), strict=False)
    if unexpected or [k for k in missing if k not in (getattr(clean, "_tied_weights_keys", None) or ())]:
        raise ModelLoadError(f"GGUF '{fname}': weights do not match the architecture "
                             f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    tmp = target.with_name(target.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    clean.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if target.exists():
        import shutil

        shutil.rmtree(target)
    tmp.rename(target)
    (target / "DONE").write_text(json.dumps({"source": spec.source, "gguf_file": fname}) + "\n")
    return target


def resolve(spec: ModelSpec) -> tuple[str, dict]:
    """Where from_pretrained should read: a folder or hub id, plus provenance info."""
    kind = _kind(spec)
    if kind == "gguf":
        return str(_gguf_expand(spec)), {"source_kind": "gguf"}
    if kind == "local":
        return str(Path(spec.source).expanduser().resolve()), {"source_kind": "local"}
    if kind == "package":
        return str(_package_path(spec.source)), {"source_kind": "package"}
    return spec.source, {"source_kind": kind}


def load_config_and_tokenizer(spec: ModelSpec):
    """(config, tokenizer, where, info) without loading weights."""
    if _kind(spec) == "tiny":
        family_name = spec.source.split(":", 1)[1]
        try:
            config, tok = registry.get("tiny", family_name)()
        except ValueError as exc:
            raise ModelLoadError(f"model source '{spec.source}': {exc}") from None
        return config, tok, None, {"source_kind": "tiny"}
    where, info = resolve(spec)
    try:
        config = AutoConfig.from_pretrained(where, revision=spec.revision, **remote_code(spec))
        tok = AutoTokenizer.from_pretrained(where, revision=spec.revision, **remote_code(spec))
    except (OSError, ValueError) as exc:
        first = first_line(exc, 10_000)
        if info["source_kind"] == "hub":
            raise ModelLoadError(
                f"cannot load model '{spec.source}' from the Hugging Face hub ({first[:200]}); if this machine is "
                "offline, give a local checkpoint folder or a .gguf file instead") from None
        raise ModelLoadError(f"cannot load model from '{where}': {first[:200]}") from None
    vocab = getattr(config, "vocab_size", None) or getattr(getattr(config, "encoder", None), "vocab_size", None)
    if len(tok) < 100 or (vocab and len(tok) < vocab / 2):
        raise ModelLoadError(f"the tokenizer of '{spec.source}' has {len(tok)} tokens against the model's {vocab} "
                             "embedding rows: it is empty or not this model's (every word would become the unknown "
                             "token); give the folder the checkpoint's tokenizer files")
    return config, tok, where, info


def ensure_pad_token(tok) -> str | None:
    """A tokenizer without a pad token (GPT-2, Llama) pads with eos, else unk; returns the token added, if any."""
    if tok.pad_token is not None:
        return None
    tok.pad_token = tok.eos_token or tok.unk_token
    return tok.pad_token


def inspect_model(spec: ModelSpec):
    """(config, tokenizer, architecture, info) without loading weights. A tokenizer without a pad token gets
    one (eos, else unk), and pads on the architecture's side."""
    config, tok, where, info = load_config_and_tokenizer(spec)
    arch = detect(config)
    added = ensure_pad_token(tok)
    if added:
        info["pad_token_added"] = added
    tok.padding_side = arch.padding_side
    info.update(family=arch.family.value, architecture=arch.name, model_type=model_type(config),
                config_model_type=config.model_type, resolved=where or spec.source, padding_side=arch.padding_side)
    return config, tok, arch, info


def head_class(arch: Architecture, head: Head, what: str = "this task"):
    """The class that loads ``arch`` with ``head``: the architecture's own, or with ``head.pooling`` mean the
    mean-pooling sequence head (an encoder's or a decoder's body)."""
    if head.pooling != "mean":
        return arch.head_class(head.kind, what)
    if head.kind is not HeadKind.SEQUENCE or arch.family is Family.ENCODER_DECODER:
        raise ValueError(f"{what}: head.pooling mean needs a sequence-level task on an encoder or a decoder "
                         f"(the model is {arch.family}); drop head.pooling")
    from .heads import MeanPooledForSequenceClassification

    return MeanPooledForSequenceClassification


def load_weights(spec: ModelSpec, config, tok, arch: Architecture, head: Head, info: dict, init_seed: int = 0,
                 what: str = "this task"):
    """The model with ``head`` (its class from ``arch``); ``config`` gets the head's sizes and the pad token."""
    auto_class = head_class(arch, head, what)
    config = copy.deepcopy(config)
    for k, v in head.config_updates().items():
        setattr(config, k, v)
    config.pad_token_id = tok.pad_token_id  # what the batches pad with (decoders: eos, set by inspect_model)
    dtype = getattr(torch, spec.dtype)
    if info["source_kind"] == "tiny":
        with torch.random.fork_rng():
            torch.manual_seed(init_seed)  # the tiny "pretrained" weights are the same for every run
            model = auto_class.from_config(config, dtype=dtype)
    else:
        quantized = quantization_kwargs(spec, head) if spec.quantization else {}
        try:
            model, loading = auto_class.from_pretrained(info["resolved"], config=config, revision=spec.revision,
                                                        dtype=dtype, output_loading_info=True, **remote_code(spec),
                                                        **quantized)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load weights of '{spec.source}' as {auto_class.__name__}: "
                                 f"{first_line(exc)}") from None
        except Exception as exc:  # safetensors' own error type, without the file's name
            if "safetensor" not in type(exc).__name__.lower():
                raise
            files = sorted(p.name for p in Path(str(info["resolved"])).glob("*.safetensors")) or ["?"]
            raise ModelLoadError(f"cannot read the weights of '{spec.source}' ({', '.join(files)}: "
                                 f"{first_line(exc, 120)}): the file is empty or truncated; download or "
                                 "build the checkpoint again") from None
    info["model_class"] = type(model).__name__
    if info["source_kind"] != "tiny":
        fresh = newly_initialised(model, loading.get("missing_keys", ()), head.kind)
        if fresh:
            info["newly_initialised"] = fresh
    if spec.quantization:
        info["quantization"] = {**spec.quantization.model_dump(), "method": "bitsandbytes"}
    elif info["source_kind"] != "tiny":
        levels = weight_levels(model)
        if levels:
            info["weight_levels"] = levels
    return model


def newly_initialised(model, missing_keys, kind) -> dict[str, int]:
    """The modules outside the task head whose weights the checkpoint did not provide, so transformers created
    them at random (a pooler on a checkpoint saved without one, e.g. many sentence-embedding models): module path
    -> parameters. Every method trains and saves them (``MethodContext.head_modules``), or PEFT methods would keep
    a random layer frozen between the body and the head while full fine-tuning trains it."""
    from .families import head_modules

    heads = set(head_modules(model, kind))
    params = dict(model.named_parameters())
    out: dict[str, int] = {}
    for key in missing_keys:
        if key.split(".")[0] in heads or key not in params:
            continue
        module = key.rsplit(".", 1)[0]
        out[module] = out.get(module, 0) + params[key].numel()
    return dict(sorted(out.items()))


def weight_levels(model, block: int = 32, levels: int = 16, most: int = 24) -> dict | None:
    """Whether a checkpoint's float weights were expanded from 4-bit blocks (a GGUF q4_0 / q4_K file, a packed
    4-bit model): of up to ``most`` linear layers spread over the model, how many have every ``block``-weight run
    along their rows taking at most ``levels`` distinct values -- true of every q4 layer expanded to floats and of
    no layer trained in floating point (32 such weights are all distinct). A mixed file (GGUF q4_K_M keeps some
    layers at 5 or 6 bits) shows some layers only. None where no linear layer has rows of whole blocks."""
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)
               and m.weight.dim() == 2 and m.weight.shape[1] % block == 0 and m.weight.dtype.is_floating_point]
    if not weights:
        return None
    step = max(1, len(weights) // most)
    found = 0
    checked = weights[::step][:most]
    with torch.no_grad():
        for w in checked:
            runs = w.detach().float().reshape(-1, block).sort(dim=1).values
            found += bool((((runs.diff(dim=1) != 0).sum(dim=1) + 1) <= levels).all())
    return {"block": block, "levels": levels, "layers_checked": len(checked), "layers_4bit": found,
            "dequantised": found > 0}


def quantization_kwargs(spec: ModelSpec, head: Head) -> dict:
    """``from_pretrained`` arguments that load ``spec`` quantised by bitsandbytes on the current CUDA device (QLoRA:
    ``{bits: 4}`` is 4-bit NF4 with double quantisation and bf16 compute); the task head stays unquantised."""
    from transformers import BitsAndBytesConfig

    q = spec.quantization
    heads = list(HEAD_MODULES[head.kind])  # (with a list given, transformers drops its own default, the LM head)
    skip = q.skip_modules if q.skip_modules is not None else ([*heads, "lm_head"] if heads else None)
    if q.bits == 4:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q.quant_type,
                                    bnb_4bit_use_double_quant=q.double_quant,
                                    bnb_4bit_compute_dtype=getattr(torch, q.compute_dtype), llm_int8_skip_modules=skip)
    else:
        config = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    device = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
    return {"quantization_config": config, "device_map": {"": device}}


def load_model(spec: ModelSpec, head: Head, what: str = "this task"):
    """(model, tokenizer, info): ``inspect_model`` then ``load_weights``."""
    config, tok, arch, info = inspect_model(spec)
    return load_weights(spec, config, tok, arch, head, info, what=what), tok, info
